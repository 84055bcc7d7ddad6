"""The committed contracts in contracts/ match what the service serves.

Regenerate after an intended change with `make contracts` (SKINSCREEN_UPDATE_CONTRACTS=1).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from fhir_mappings.code_system import code_system
from fhir_mappings.conformance import capability_statement, operation_definition
from fhir_mappings.review_operation import review_operation_definition
from service import __version__
from service.app import create_app
from service.pipeline import events as ev
from service.settings import Settings

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
UPDATE = os.environ.get("SKINSCREEN_UPDATE_CONTRACTS") == "1"
BASE = "http://127.0.0.1:8000/fhir"


def check(name: str, current: dict[str, Any]) -> None:
    """Compare with (or, when updating, rewrite) contracts/<name>."""
    path = CONTRACTS / name
    text = json.dumps(current, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} missing: run `make contracts`"
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(text), (
        f"{name} drifted from the code: review the change, then run `make contracts`"
    )


def test_openapi_document_has_not_drifted() -> None:
    app = create_app(Settings())
    schema = app.openapi_schema.to_schema()
    assert "/api/v1/classify" in schema["paths"]
    check("openapi.json", schema)


def test_fhir_conformance_resources_have_not_drifted() -> None:
    check("CapabilityStatement.json", capability_statement(BASE, __version__))
    check("OperationDefinition-skin-diagnose.json", operation_definition(BASE))
    check("OperationDefinition-skin-review.json", review_operation_definition())
    check("CodeSystem-skin-condition.json", code_system())


def test_sse_contract_is_a_valid_schema_for_every_event() -> None:
    contract = json.loads((CONTRACTS / "sse-events.schema.json").read_text(encoding="utf-8"))
    assert set(contract["events"]) == set(ev.EVENT_NAMES)
    for name in ev.EVENT_NAMES:
        schema = {
            "$schema": contract["$schema"],
            "$defs": contract["$defs"],
            **contract["events"][name],
        }
        jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize(
    "name,payload,valid",
    [
        ("report.delta", {"text": "hello"}, True),
        ("report.delta", {"text": ""}, False),
        (
            "classified",
            {
                "status": "rejected",
                "reasons": ["not_skin"],
                "label": None,
                "confidence": None,
                "model": {"name": "m", "version": "1", "sha256": "a" * 64},
                "referral": {"level": "routine", "reasons": ["photo_not_assessable"]},
            },
            True,
        ),
        (
            "classified",
            {
                "status": "ok",
                "reasons": [],
                "label": "Milia",
                "confidence": 0.8,
                "probabilities": {"Milia": 0.8, "Carcinoma": 0.12},
                "model": {"name": "m", "version": "1", "sha256": "a" * 64},
            },
            False,  # no referral: every classification carries the triage decision
        ),
        (
            "report.reviewed",
            {
                "id": "c1",
                "status": "final",
                "review": {
                    "reviewer": {"name": "Dr. Roe", "id": None},
                    "decision": "confirm",
                    "finding": "Milia",
                    "comment": None,
                    "reviewed_at": "2026-12-02T00:00:00+00:00",
                    "version": 2,
                },
            },
            True,
        ),
        (
            "classified",
            {
                "status": "rejected",
                "reasons": [],
                "label": None,
                "confidence": None,
                "probabilities": {},
                "model": {"name": "m", "version": "1", "sha256": "a" * 64},
            },
            False,
        ),
        ("pdf.ready", {"id": "x", "size": 0, "sha256": "a" * 64, "url": "/x"}, False),
    ],
)
def test_sse_contract_accepts_and_rejects(name: str, payload: dict[str, Any], valid: bool) -> None:
    contract = json.loads((CONTRACTS / "sse-events.schema.json").read_text(encoding="utf-8"))
    schema = {
        "$schema": contract["$schema"],
        "$defs": contract["$defs"],
        **contract["events"][name],
    }
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(payload))
    assert (not errors) == valid, errors
