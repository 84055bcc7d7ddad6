"""Bounded property-based fuzzing of the live service with schemathesis (security item 13).

A real uvicorn server (`SKINSCREEN_AUTH=on`, one client with an API key, no rate limit) is
fuzzed from its own OpenAPI document, `/schema/openapi.json`, by the schemathesis CLI (the
supported way to run it in CI; its `pytest.from_fixture` loader breaks on pytest 9.2, which
dropped `Node._nodeid`). Phases: the schema's examples, coverage (boundary values, missing or
wrongly typed parameters, unexpected methods such as TRACE), `MAX_EXAMPLES` random cases per
operation, positive and negative, and short stateful sequences along the links schemathesis
infers; all from a fixed seed so that a failure reproduces (`SKINSCREEN_FUZZ_SEED` explores
other inputs). A failure shows a curl command that reproduces it. Invariants, whatever the
input:

* no 5xx, and no request takes `REQUEST_TIMEOUT_S` or more (a timeout is a run error: a hang);
* every error (status >= 400) is RFC 9457 `application/problem+json` with a matching `status`,
  or, under `/fhir`, an `application/fhir+json` `OperationOutcome`.

Documented exceptions, where the protocol prescribes another error format:

* `POST /auth/token` answers its refusals as RFC 6749 §5.2 `application/json` `{"error": ...}`
  (errors raised before the handler, 405 or 413, are still problem+json);
* STOW-RS (`POST /dicomweb/studies[/{study}]`) answers 409 "every instance failed" with a
  PS3.18 `application/dicom+json` store response (a malformed request is still problem+json).

The streaming routes are included: for a random job id `/events` is a 404; a stream that did
open is read for at most 20 events (schemathesis's default) or the request timeout.

A second run sends every operation without a credential (positive data only): each protected
route answers 401 with `WWW-Authenticate` (in the format above); the public ones do not.

This module is also the run's hooks module (`SCHEMATHESIS_HOOKS`): importing it registers the
custom checks `error_format` and `anonymous_refused` with schemathesis.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis import Case, CheckContext, Response

from tests.support.clients import write_clients
from tests.support.live_server import LiveServer, start_server, stop_server

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk_fuzz_" + "0123456789abcdef" * 2
SEED = int(os.environ.get("SKINSCREEN_FUZZ_SEED", "20240613"))
MAX_EXAMPLES = 10  # random (fuzzing-phase) cases per operation; coverage adds its own
MAX_EXAMPLES_ANONYMOUS = 3
REQUEST_TIMEOUT_S = 10  # one request taking this long is a hang
RUN_DEADLINE_S = 120  # the whole CLI run; beyond it the run is killed and the test fails
MIN_CASES = 200  # fewer generated cases means the schema or the generator lost operations
PROBLEM_JSON = "application/problem+json"
FHIR_JSON = "application/fhir+json"
DICOM_JSON = "application/dicom+json"
# Routes open without a credential (`opt={"public": True}`): health, discovery, the schema.
PUBLIC = {
    "GET /health",
    "GET /ready",
    "GET /.well-known/smart-configuration",
    "GET /fhir/.well-known/smart-configuration",
    "GET /fhir/metadata",
    "GET /fhir/OperationDefinition/skin-diagnose",
    "GET /fhir/OperationDefinition/skin-review",
    "GET /fhir/CodeSystem/skin-condition",
    "GET /auth/jwks",
    "POST /auth/token",
    "GET /schema",
    "GET /schema/openapi.json",
    "GET /schema/{path}",
}


# --- the checks (run inside the schemathesis CLI process) ------------------------------------


def _media_type(response: Response) -> str:
    values = response.headers.get("content-type") or [""]
    return values[0].split(";")[0].strip().lower()


def _label(case: Case) -> str:
    return f"{case.method.upper()} {case.operation.path}"


@schemathesis.check
def error_format(ctx: CheckContext, response: Response, case: Case) -> None:
    """An error is problem+json (REST) or an OperationOutcome (/fhir), bar the two above."""
    status = response.status_code
    if status < 400:
        return
    media_type, path = _media_type(response), case.operation.path
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if _label(case) == "POST /auth/token" and media_type == "application/json":
        assert isinstance(body, dict), f"{status} OAuth error is not a JSON object"
        assert isinstance(body.get("error"), str), f"{status} OAuth error without `error`"
        return
    if path.startswith("/dicomweb/studies") and status == 409 and media_type == DICOM_JSON:
        return
    if path == "/fhir" or path.startswith("/fhir/"):
        assert media_type == FHIR_JSON, f"{status} under /fhir answered {media_type!r}"
        assert isinstance(body, dict), f"{status} under /fhir is not a JSON object"
        assert body.get("resourceType") == "OperationOutcome", f"{status} is not an outcome"
        assert body.get("issue"), f"{status} OperationOutcome without an issue"
        return
    assert media_type == PROBLEM_JSON, f"{status} answered {media_type!r}, not problem+json"
    assert isinstance(body, dict), f"{status} problem+json is not a JSON object"
    assert body.get("status") == status, f"problem `status` {body.get('status')!r} on a {status}"
    assert isinstance(body.get("title"), str), f"{status} problem+json without a `title`"


@schemathesis.check
def anonymous_refused(ctx: CheckContext, response: Response, case: Case) -> None:
    """Without a credential a protected route answers 401 + WWW-Authenticate."""
    label = _label(case)
    if label == "POST /auth/token":
        return  # public, and 401 `invalid_client` is its RFC 6749 answer to a bad assertion
    if label in PUBLIC:
        assert response.status_code != 401, f"public {label} asked for a credential"
        return
    assert response.status_code == 401, f"{label} without a credential: {response.status_code}"
    challenge = (response.headers.get("www-authenticate") or [""])[0]
    assert challenge.lower().startswith("bearer"), f"401 with WWW-Authenticate {challenge!r}"


# --- the server and the runs -------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The service with auth on, one client (all scopes) holding `API_KEY`, no rate limit."""
    tmp = tmp_path_factory.mktemp("fuzz")
    clients = write_clients(tmp / "clients.json", {"fuzzer": (["system/*.cruds"], API_KEY)})
    env = {
        "SKINSCREEN_AUTH": "on",
        "SKINSCREEN_CLIENTS_FILE": str(clients),
        "SKINSCREEN_RATE_LIMIT_PER_MINUTE": "0",  # hundreds of requests a minute, on purpose
    }
    server = start_server(tmp, env, name="fuzz-server")
    yield server
    stop_server(server)


def run_schemathesis(
    server: LiveServer, tmp: Path, *options: str, checks: str, max_examples: int
) -> dict[str, Any]:
    """One bounded `schemathesis run` against the server; its JSON report, or a failure."""
    report = tmp / "report.json"
    (tmp / "schemathesis.toml").write_text("", encoding="utf-8")  # no config from elsewhere
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--no-color"),
        *("--config-file", str(tmp / "schemathesis.toml")),
        *("run", f"{server.url}/schema/openapi.json", *options),
        *("--checks", checks, "--max-examples", str(max_examples), "--seed", str(SEED)),
        *("--request-timeout", str(REQUEST_TIMEOUT_S), "--generation-database", "none"),
        *("--workers", "1", "--continue-on-failure", "--suppress-health-check", "too_slow"),
        *("--report", "json", "--report-json-path", str(report)),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "SCHEMATHESIS_HOOKS": str(Path(__file__).resolve()),  # this module: the checks
    }
    log_offset = len(server.logs())
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=tmp, env=env, capture_output=True, text=True, timeout=RUN_DEADLINE_S
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode()
        pytest.fail(f"schemathesis ran past its {RUN_DEADLINE_S} s deadline:\n{output[-6000:]}")
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    new_log = server.logs()[log_offset:]
    crashes = [line for line in new_log.splitlines() if '"unhandled_error"' in line]
    if done.returncode != 0:
        sections = [i for i in (output.find(" FAILURES "), output.find(" ERRORS ")) if i >= 0]
        start = output.rfind("\n", 0, min(sections)) if sections else len(output) - 20000
        pytest.fail(
            f"schemathesis failed (exit {done.returncode}, seed {SEED}):"
            f"{output[max(0, start) :][:20000]}\nserver unhandled errors: {crashes[:5]}"
        )
    assert not crashes, f"the server logged unhandled errors: {crashes[:5]}"
    result: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    cases = result["test_cases"]["generated"]
    print(f"\nschemathesis {result['schemathesis_version']}: {cases} cases in {elapsed:.1f} s")
    assert result["complete"] and result["stop_reason"] == "completed", result["stop_reason"]
    assert not result["errors"], result["errors"]
    operations = result["operations"]
    assert operations["tested"] == operations["selected"] > 20, operations
    return result


@pytest.mark.timeout(RUN_DEADLINE_S + 90)  # + starting the server
def test_fuzz_with_credentials(fuzz_server: LiveServer, tmp_path: Path) -> None:
    """No 5xx, no hang, every error in the agreed format, for a few hundred generated cases."""
    result = run_schemathesis(
        fuzz_server,
        tmp_path,
        *("--header", f"X-API-Key: {API_KEY}", "--phases", "examples,coverage,fuzzing,stateful"),
        checks="not_a_server_error,error_format",
        max_examples=MAX_EXAMPLES,
    )
    assert result["test_cases"]["generated"] >= MIN_CASES, result["test_cases"]


@pytest.mark.timeout(RUN_DEADLINE_S + 90)  # + starting the server
def test_fuzz_without_credentials(fuzz_server: LiveServer, tmp_path: Path) -> None:
    """Every protected operation refuses an anonymous caller with 401 + WWW-Authenticate."""
    run_schemathesis(
        fuzz_server,
        tmp_path,
        *("--mode", "positive", "--phases", "examples,fuzzing"),
        checks="not_a_server_error,error_format,anonymous_refused",
        max_examples=MAX_EXAMPLES_ANONYMOUS,
    )
