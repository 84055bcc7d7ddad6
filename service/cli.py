"""The `skinscreen` command line: serve, train, classify, evaluate, diagnose."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

TRAIN_WORK_DIR = "build/train"


def _cmd_train(args: argparse.Namespace) -> int:
    if args.cv is not None:
        return _cmd_train_cv(args)
    name = args.name or f"skinscreen-{args.arch}"
    # only what the user set overrides the recipe's own defaults
    overrides = {
        key: getattr(args, key)
        for key in ("epochs", "imgsz", "batch", "seed")
        if getattr(args, key) is not None
    }
    data, out, work = Path(args.data), Path(args.out), Path(args.work_dir)
    if args.arch.startswith("efficientnet"):
        from service.training.effnet import EffnetRecipe, train_effnet

        train_effnet(data, out, name, EffnetRecipe(**overrides), work, version=args.version)
        return 0
    from service.training.yolo import YoloRecipe, train_yolo

    train_yolo(data, out, name, YoloRecipe(arch=args.arch, **overrides), work, version=args.version)
    return 0


def _cmd_train_cv(args: argparse.Namespace) -> int:
    from service.training import cv, cv_fit

    if args.arch.startswith("yolo"):
        from service.training import yolo_cv

        # distilled from the EfficientNet CV's fold models, on the same folds
        argv = ["--data", args.data, "--arch", args.arch, "--models-dir", args.out]
        if args.epochs is not None:
            argv += ["--epochs", str(args.epochs)]
        return yolo_cv.main(argv)
    name = args.name or f"skinscreen-{args.arch}"  # efficientnet-lite0: cv.DEFAULT_NAME
    # the same work dir as `python -m service.training.cv` (cv_final and yolo_cv read it)
    work = f"build/cv/{name}" if args.work_dir == TRAIN_WORK_DIR else f"{args.work_dir}/{name}"
    argv = ["--data", args.data, "--k", str(args.cv), "--name", name, "--out", f"{args.out}/cv"]
    argv += ["--work-dir", work]
    argv += ["--arch", args.arch]
    if args.imgsz is not None:  # training crops ~6/7 of it (multiple of 32), as in the recipe
        train_imgsz = round(args.imgsz * 6 / 7 / 32) * 32
        argv += ["--imgsz", str(args.imgsz), "--train-imgsz", str(train_imgsz)]
    if args.epochs is not None:
        argv += ["--epochs", str(args.epochs)]
    if cv.main(argv) != 0:
        return 1
    oof = f"{args.out}/cv/{name}.oof.npz"
    return cv_fit.main(["--oof", oof, "--work-dir", work, "--data", args.data])


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import create_app
    from service.security.setup import AuthModeRefused, check_mode
    from service.settings import get_settings

    settings = get_settings()
    host = args.host or settings.host
    port = args.port or settings.port
    settings = settings.model_copy(update={"host": host, "port": port})  # links name this address
    try:
        check_mode(settings, host)
    except AuthModeRefused as refused:
        print(f"skinscreen: {refused}", file=sys.stderr)
        return 2
    # Links (FHIR fullUrl, Content-Location, paging) are built from settings, never from the
    # Host header: serve on what the command line chose.
    settings = settings.model_copy(update={"host": host, "port": port})
    app = create_app(settings, worker=not args.no_worker)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
    return 0


def _cmd_clients_add(args: argparse.Namespace) -> int:
    from service.security.clients import add_client
    from service.settings import get_settings

    settings = get_settings()
    path = settings.clients_file or settings.data_dir / "clients.json"
    jwks = Path(args.jwks) if args.jwks else None
    client_id, api_key = add_client(path, args.name, args.scopes, jwks)
    print(f"client {client_id} added to {path}")
    print(f"API key (shown once, only its SHA-256 is stored): {api_key}")
    return 0


def _cmd_clients_keygen(args: argparse.Namespace) -> int:
    from service.security.client_tools import keygen

    keygen(Path(args.private_key), Path(args.jwks))
    print(f"private key: {args.private_key} (keep it secret); public JWKS: {args.jwks}")
    return 0


def _cmd_clients_assertion(args: argparse.Namespace) -> int:
    from service.security.client_tools import assertion

    print(assertion(args.client_id, Path(args.private_key), args.token_url))
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    from service.cli_commands import run_worker
    from service.settings import get_settings

    return run_worker(get_settings(), args.concurrency, args.metrics_port)


def _cmd_classify(args: argparse.Namespace) -> int:
    from service.cli_commands import classify_paths
    from service.settings import get_settings

    settings = get_settings()
    if args.backend:
        settings = settings.model_copy(update={"classifier": args.backend})
    return classify_paths(settings, args.paths, args.json)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from service.cli_commands import evaluate_dir
    from service.settings import get_settings

    if args.cv is not None:
        from service.evaluation.cv_report import format_cv_report

        settings = get_settings()
        path = settings.models_dir / "cv" / f"{args.cv or settings.effnet_model}.cv.json"
        if not path.is_file():
            print(f"skinscreen: no {path}: run `skinscreen train --cv 5` first", file=sys.stderr)
            return 2
        report = json.loads(path.read_text(encoding="utf-8"))
        print(json.dumps(report, indent=2) if args.json else format_cv_report(report))
        return 0
    if args.dir is None:
        print("skinscreen: evaluate needs a folder (or --cv)", file=sys.stderr)
        return 2
    results = evaluate_dir(get_settings(), Path(args.dir), args.backend or [])
    print(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from service.cli_commands import diagnose_file
    from service.settings import get_settings

    fields = {
        "language": args.lang,
        "patient_name": args.name or "",
        "history": args.history or "",
        "patient_age": "" if args.age is None else str(args.age),
        "patient_sex": args.sex or "",
    }
    return diagnose_file(get_settings(), Path(args.image), Path(args.out), fields)


def build_parser() -> argparse.ArgumentParser:
    """All sub-commands and their options."""
    parser = argparse.ArgumentParser(prog="skinscreen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default=None, help="default 127.0.0.1 (SKINSCREEN_HOST)")
    serve.add_argument("--port", type=int, default=None, help="default 8000 (SKINSCREEN_PORT)")
    serve.add_argument(
        "--no-worker", action="store_true", help="API only: cases are run by `skinscreen worker`"
    )
    serve.set_defaults(func=_cmd_serve)

    clients = sub.add_parser("clients", help="manage API clients (SKINSCREEN_CLIENTS_FILE)")
    clients_sub = clients.add_subparsers(dest="clients_command", required=True)
    add = clients_sub.add_parser("add", help="register a client and print a new API key once")
    add.add_argument("name")
    add.add_argument(
        "--scopes",
        nargs="+",
        default=["system/DiagnosticReport.cr"],
        help="SMART v2 scopes, e.g. system/DiagnosticReport.cr system/ImagingStudy.cr",
    )
    add.add_argument("--jwks", default=None, help="public JWKS file for private_key_jwt")
    add.set_defaults(func=_cmd_clients_add)
    keys = clients_sub.add_parser("keygen", help="an RSA key pair for private_key_jwt")
    keys.add_argument("--private-key", default="client-key.pem")
    keys.add_argument("--jwks", default="client.jwks.json")
    keys.set_defaults(func=_cmd_clients_keygen)
    signed = clients_sub.add_parser("assertion", help="print a client assertion for /auth/token")
    signed.add_argument("client_id")
    signed.add_argument("--private-key", default="client-key.pem")
    signed.add_argument("--token-url", default="http://127.0.0.1:8000/auth/token")
    signed.set_defaults(func=_cmd_clients_assertion)

    worker = sub.add_parser("worker", help="run cases from the shared store (no HTTP)")
    worker.add_argument(
        "--concurrency", type=int, default=0, help="cases at once (SKINSCREEN_MAX_CONCURRENT_RUNS)"
    )
    worker.add_argument(
        "--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port"
    )
    worker.set_defaults(func=_cmd_worker)

    classify = sub.add_parser("classify", help="classify image files")
    classify.add_argument("paths", nargs="+")
    classify.add_argument("--json", action="store_true", help="one JSON object per line")
    classify.add_argument("--backend", choices=["yolo", "effnet", "ensemble"], default=None)
    classify.set_defaults(func=_cmd_classify)

    evaluate = sub.add_parser(
        "evaluate", help="metrics on a folder-per-class image set, or the CV report (--cv)"
    )
    evaluate.add_argument("dir", nargs="?", default=None)
    evaluate.add_argument(
        "--cv",
        nargs="?",
        const="",
        default=None,
        metavar="NAME",
        help="print the cross-validated figures of models/cv/NAME.cv.json (with intervals; "
        "default: the served effnet model's)",
    )
    evaluate.add_argument("--json", action="store_true", help="with --cv: the raw report")
    evaluate.add_argument(
        "--backend",
        action="append",
        choices=["yolo", "effnet", "ensemble"],
        help="repeatable; default: every shipped backend",
    )
    evaluate.set_defaults(func=_cmd_evaluate)

    diagnose = sub.add_parser("diagnose", help="full report for one image (PDF)")
    diagnose.add_argument("image")
    diagnose.add_argument("--lang", default="en", choices=["ko", "en", "vi"])
    diagnose.add_argument("--out", default="report.pdf")
    diagnose.add_argument("--name", default=None)
    diagnose.add_argument("--age", type=int, default=None)
    diagnose.add_argument("--sex", default=None, choices=["female", "male", "other", "unknown"])
    diagnose.add_argument("--history", default=None)
    diagnose.set_defaults(func=_cmd_diagnose)

    train = sub.add_parser("train", help="train a classifier offline and ship it to models/")
    train.add_argument("--data", required=True, help="folder with train/<Class>/ and val/<Class>/")
    train.add_argument(
        "--arch",
        default="yolov8n-cls",
        help="Ultralytics YAML name (yolov8n-cls, yolov8s-cls) or efficientnet-lite0|1|2",
    )
    train.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    train.add_argument("--imgsz", type=int, default=None, help="default: the recipe's (224)")
    train.add_argument("--batch", type=int, default=None, help="default: the recipe's (32)")
    train.add_argument("--seed", type=int, default=None, help="default: the recipe's")
    train.add_argument("--name", default=None, help="model name (file stem in --out)")
    train.add_argument("--version", default="1.0.0")
    train.add_argument("--out", default="models")
    train.add_argument("--work-dir", default=TRAIN_WORK_DIR)
    train.add_argument(
        "--cv",
        type=int,
        default=None,
        metavar="K",
        help="photo-group K-fold cross-validation over train + val instead of shipping a model "
        "(resumable; writes models/cv/<name>.oof.npz and .cv.json): the EfficientNet recipe, "
        "or with --arch yolov8n-cls|yolov8s-cls the student distilled from its fold models",
    )
    train.set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and `python -m service`."""
    args = build_parser().parse_args(argv)
    from service.logging import configure_logging
    from service.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)  # logs → stderr, results → stdout
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
