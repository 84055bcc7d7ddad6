"""POST /api/v1/classify through real HTTP: contract, bad input, health and readiness."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.support.factories import jpeg
from tests.support.live_server import LiveServer

CLASSES = ["Acne", "Carcinoma", "Eczema", "Keratosis", "Milia", "Rosacea"]


def test_health_and_ready(live_server: LiveServer) -> None:
    assert httpx.get(f"{live_server.url}/health").json()["status"] == "ok"
    ready = httpx.get(f"{live_server.url}/ready").json()
    assert ready["status"] == "ready"
    assert len(ready["classifier"]["sha256"]) == 64


def test_multipart_and_raw_body_agree(live_server: LiveServer, skin_jpeg: bytes) -> None:
    multipart = httpx.post(
        f"{live_server.url}/api/v1/classify", files={"image": ("a.jpg", skin_jpeg, "image/jpeg")}
    )
    raw = httpx.post(
        f"{live_server.url}/api/v1/classify",
        content=skin_jpeg,
        headers={"content-type": "image/jpeg"},
    )
    assert multipart.status_code == raw.status_code == 200
    body = multipart.json()
    assert body == raw.json()
    assert body["status"] in ("ok", "inconclusive")
    assert body["label"] in CLASSES
    assert set(body["probabilities"]) == set(CLASSES)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["confidence"] == max(body["probabilities"].values())
    assert set(body["model"]) == {"name", "version", "sha256"}
    assert "x-request-id" in multipart.headers


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_png_and_webp(live_server: LiveServer, skin_jpeg: bytes, fmt: str) -> None:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(skin_jpeg)).save(buffer, format=fmt)
    r = httpx.post(
        f"{live_server.url}/api/v1/classify",
        content=buffer.getvalue(),
        headers={"content-type": f"image/{fmt.lower()}"},
    )
    assert r.status_code == 200, r.text


def test_exif_orientation_applied(live_server: LiveServer, skin_jpeg: bytes) -> None:
    """A photo stored sideways with an EXIF orientation tag is classified upright.

    PNG keeps the pixels exact, so both uploads must give the same probabilities.
    """
    upright = Image.open(io.BytesIO(skin_jpeg)).convert("RGB")
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": undoes the counter-clockwise ROTATE_90
    tagged, plain, unrotated = io.BytesIO(), io.BytesIO(), io.BytesIO()
    sideways.save(tagged, format="PNG", exif=exif)
    upright.save(plain, format="PNG")
    sideways.save(unrotated, format="PNG")

    def classify(body: bytes) -> dict[str, float]:
        r = httpx.post(
            f"{live_server.url}/api/v1/classify",
            content=body,
            headers={"content-type": "image/png"},
        )
        probabilities: dict[str, float] = r.json()["probabilities"]
        return probabilities

    expected, got = classify(plain.getvalue()), classify(tagged.getvalue())
    for cls in CLASSES:
        assert got[cls] == pytest.approx(expected[cls], abs=1e-5)
    ignored = classify(unrotated.getvalue())
    assert any(abs(ignored[c] - expected[c]) > 1e-4 for c in CLASSES), "rotation must matter"


def _png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header announcing a huge image, with a tiny compressed body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    raw = zlib.compress(b"\x00" * (width + 1) * 16, 9)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


BAD_INPUTS = {
    "empty": (b"", "image/jpeg", 422, "empty-body"),
    "not an image": (b"hello, world" * 10, "image/jpeg", 422, "invalid-image"),
    "bomb": (_png_bomb(20000, 20000), "image/png", 413, "image-too-large"),
    "wrong type": (b"{}", "application/json", 415, "unsupported-media-type"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_problem_json(live_server: LiveServer, case: str) -> None:
    body, content_type, status, code = BAD_INPUTS[case]
    r = httpx.post(
        f"{live_server.url}/api/v1/classify", content=body, headers={"content-type": content_type}
    )
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == status and problem["code"] == code and problem["detail"]
    assert "Traceback" not in r.text


def test_truncated_jpeg(live_server: LiveServer, skin_jpeg: bytes) -> None:
    r = httpx.post(
        f"{live_server.url}/api/v1/classify",
        content=skin_jpeg[: len(skin_jpeg) // 3],
        headers={"content-type": "image/jpeg"},
    )
    assert r.status_code == 422
    assert r.json()["code"] == "invalid-image"


def test_too_small(live_server: LiveServer) -> None:
    tiny = jpeg((20, 40), (200, 150, 130))
    r = httpx.post(
        f"{live_server.url}/api/v1/classify", content=tiny, headers={"content-type": "image/jpeg"}
    )
    assert r.status_code == 422 and r.json()["code"] == "image-too-small"


def test_body_over_limit_is_413(live_server: LiveServer) -> None:
    big = b"\xff\xd8" + b"\0" * (21 * 1024 * 1024)
    r = httpx.post(
        f"{live_server.url}/api/v1/classify",
        content=big,
        headers={"content-type": "image/jpeg"},
        timeout=30,
    )
    assert r.status_code == 413
    assert r.json()["code"] == "payload-too-large"


def test_unknown_route_is_problem_json(live_server: LiveServer) -> None:
    r = httpx.get(f"{live_server.url}/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


def test_explain_returns_heatmap(live_server: LiveServer, skin_jpeg: bytes) -> None:
    r = httpx.post(
        f"{live_server.url}/api/v1/classify?explain=true",
        content=skin_jpeg,
        headers={"content-type": "image/jpeg"},
    )
    heatmap = r.json()["heatmap"]
    assert heatmap.startswith("data:image/png;base64,")


def test_logs_are_json_with_request_id_and_no_image_bytes(live_server: LiveServer) -> None:
    lines = [line for line in live_server.logs().splitlines() if line.startswith("{")]
    assert lines, "the server must log JSON lines"
    import json

    requests = [json.loads(line) for line in lines if '"event": "request"' in line]
    assert requests and all("request_id" in r and "duration_ms" in r for r in requests)
    assert "/9j/" not in live_server.logs()  # no base64 JPEG in logs


def test_classify_cli_json(tmp_path: Path, skin_jpeg: bytes) -> None:
    import json
    import subprocess
    import sys

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(skin_jpeg)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "classify",
            str(photo),
            str(tmp_path / "missing.jpg"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 1  # one input failed
    assert lines[0]["path"] == str(photo) and lines[0]["label"] in CLASSES
    assert set(lines[0]["probabilities"]) == set(CLASSES)
    assert "error" in lines[1]
