"""The `skinscreen` command line: serve, train, classify, evaluate."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def _cmd_train(args: argparse.Namespace) -> int:
    from service.training.yolo import YoloRecipe, train_yolo  # noqa: PLC0415 - needs `train` extra

    recipe = YoloRecipe(
        arch=args.arch, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, seed=args.seed
    )
    name = args.name or f"skinscreen-{args.arch}-{args.imgsz}"
    train_yolo(
        Path(args.data), Path(args.out), name, recipe, Path(args.work_dir), version=args.version
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """All sub-commands and their options."""
    parser = argparse.ArgumentParser(prog="skinscreen", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a YOLOv8-cls model offline and ship it to models/")
    train.add_argument("--data", required=True, help="folder with train/<Class>/ and val/<Class>/")
    train.add_argument("--arch", default="yolov8n-cls", help="Ultralytics YAML name")
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--imgsz", type=int, default=224)
    train.add_argument("--batch", type=int, default=32)
    train.add_argument("--seed", type=int, default=20261125)
    train.add_argument("--name", default=None, help="model name (file stem in --out)")
    train.add_argument("--version", default="1.0.0")
    train.add_argument("--out", default="models")
    train.add_argument("--work-dir", default="build/train")
    train.set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and `python -m service`."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
