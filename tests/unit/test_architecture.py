"""The house rules, checked on the source: imports only go down a floor, modules stay small.

Floors, top to bottom (see ARCHITECTURE.md): entry points → doors → wiring → jobs →
intake/outputs → DICOM and FHIR-server adapters → report, store, mappings → pipeline → base.
A module may import its own floor or lower ones, never a higher one — also inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 300

#: Package or module prefix → floor (the longest matching prefix wins).
FLOORS: dict[str, int] = {
    "service": 0,
    "service.errors": 0,
    "service.settings": 0,
    "service.logging": 0,
    "service.metrics": 0,
    "service.tracing": 0,
    "service.bounded_json": 0,
    "service.pipeline": 1,
    "service.images": 2,
    "service.report": 2,
    "service.store": 2,
    "fhir_mappings": 2,
    "service.dicom": 3,
    "service.fhir_server": 3,
    "service.intake": 4,
    "service.outputs": 4,
    "service.security": 4,
    "service.evaluation": 4,
    "service.training": 4,
    "service.jobs": 5,
    "service.worker": 5,
    "service.reviews": 5,
    "service.bootstrap": 6,
    "service.api": 7,
    "service.cli_commands": 7,
    "service.app": 8,
    "service.cli": 8,
    "service.__main__": 9,
}


def floor_of(module: str) -> int | None:
    """The floor of a dotted module name, or None for third-party modules."""
    parts = module.split(".")
    for size in range(len(parts), 0, -1):
        prefix = ".".join(parts[:size])
        if prefix in FLOORS:
            return FLOORS[prefix]
    return None


def sources() -> list[Path]:
    return sorted([*(ROOT / "service").rglob("*.py"), *(ROOT / "fhir_mappings").rglob("*.py")])


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, nested ones included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_every_module_has_a_floor() -> None:
    missing = [module_name(p) for p in sources() if floor_of(module_name(p)) is None]
    assert not missing


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_only_go_down(path: Path) -> None:
    own = floor_of(module_name(path))
    assert own is not None
    upward = [
        f"line {line}: {target} (floor {floor_of(target)} > {own})"
        for line, target in imports(path)
        if (floor_of(target) or 0) > own
    ]
    assert not upward, f"{module_name(path)} imports a higher floor: {upward}"


def test_the_pipeline_knows_no_door_and_no_wire_format() -> None:
    forbidden = (
        *("service.intake", "service.api", "service.outputs", "service.dicom"),
        *("service.fhir_server", "fhir_mappings", "litestar", "pydicom", "httpx"),
    )
    for path in (ROOT / "service" / "pipeline").rglob("*.py"):
        if path.name == "openai_compat.py":  # the OpenAI-compatible narrator is an HTTP client
            forbidden_here = tuple(f for f in forbidden if f != "httpx")
        else:
            forbidden_here = forbidden
        bad = [t for _, t in imports(path) if t.startswith(forbidden_here)]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_the_check_itself_sees_an_upward_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from service.api.rest import services_of\n")
    assert imports(probe) == [(2, "service.api.rest")]
    assert (floor_of("service.api.rest") or 0) > FLOORS["service.pipeline"]


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines"
