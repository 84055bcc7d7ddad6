"""Names and histories in Thai, Devanagari, Ethiopic, Arabic and Hebrew: rendered in the PDF with
real glyphs (the Noto fonts are installed), and never in the logs — not even through the
third-party libraries (WeasyPrint's ".notdef glyph" warning quotes the text it cannot render;
one character per record, so characters and code points are checked too; a private-use name
forces that warning)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import unicodedata
from collections import Counter

import httpx
import pytest

from tests.support.live_server import LiveServer

PATIENTS = {
    "thai": ("สมชาย ใจดี", "ผื่นคันที่แขนสามสัปดาห์"),
    "devanagari": ("राहुल शर्मा", "तीन सप्ताह से खुजली"),
    "ethiopic": ("አበበ ቢቂላ", "ለሦስት ሳምንታት ማሳከክ"),
    "arabic": ("محمد الأحمد", "حكة منذ ثلاثة أسابيع"),
    "hebrew": ("דוד כהן", "גירוד כבר שלושה שבועות"),
    # plane-16 private use: no font has these, so WeasyPrint logs each one as a .notdef glyph
    "no-font": ("\U0010fffd\U0010fffc\U0010fffb", "\U0010fff0\U0010fff1\U0010fff2"),
}
FONTS = {
    "thai": "th",
    "devanagari": "hi",
    "ethiopic": "am",
    "arabic": "ar",
    "hebrew": "he",
}
#: pdftotext reorders Arabic lam-alef ligatures and Devanagari reph: compare letters there.
EXACT = {"thai", "ethiopic", "hebrew"}


def _font_for(lang: str) -> bool:
    if shutil.which("fc-list") is None:
        return False
    listed = subprocess.run(["fc-list", f":lang={lang}", "family"], capture_output=True, text=True)
    return bool(listed.stdout.strip())


def _substrings(text: str, size: int = 3) -> set[str]:
    words = [w for w in text.split() if len(w) >= size]
    return {w[i : i + size] for w in words for i in range(len(w) - size + 1)}


def _decoded(logs: str) -> str:
    """The log text with JSON's \\u escapes undone (ensure_ascii would hide a leak)."""
    lines = []
    for line in logs.splitlines():
        try:
            lines.append(json.dumps(json.loads(line), ensure_ascii=False))
        except ValueError:
            lines.append(line)
    return "\n".join(lines) + "\n" + logs


def _letters(text: str) -> Counter[str]:
    return Counter(c for c in text if unicodedata.category(c).startswith("L"))


@pytest.fixture(scope="module")
def rendered(live_server: LiveServer, skin_jpeg: bytes) -> dict[str, bytes]:
    pdfs = {}
    for script, (name, history) in PATIENTS.items():
        r = httpx.post(
            f"{live_server.url}/api/v1/diagnose",
            files={"image": ("a.jpg", skin_jpeg, "image/jpeg")},
            data={"patient_name": name, "history": history, "language": "en"},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        pdfs[script] = httpx.get(live_server.url + r.json()["links"]["pdf"], timeout=30).content
    return pdfs


def test_no_log_line_holds_any_part_of_a_name_or_history(
    live_server: LiveServer, rendered: dict[str, bytes]
) -> None:
    logs = _decoded(live_server.logs())
    assert rendered and logs.strip()
    for script, (name, history) in PATIENTS.items():
        for piece in _substrings(name) | _substrings(history):
            assert piece not in logs, f"{script}: {piece!r} from the request is in the logs"
        for char in set(name + history) - set(" "):
            assert char not in logs, f"{script}: {char!r} from the request is in the logs"
            assert f"U+{ord(char):04X}" not in logs, f"{script}: U+{ord(char):04X} is in the logs"


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
@pytest.mark.parametrize("script", sorted(FONTS))
def test_names_render_with_real_glyphs(rendered: dict[str, bytes], script: str) -> None:
    if not _font_for(FONTS[script]):
        if os.environ.get("CI") == "true":
            pytest.fail(f"no font for {script}: scripts/setup.sh installs fonts-noto-core")
        pytest.skip(f"no font for {script} on this machine")
    text = subprocess.run(
        ["pdftotext", "-", "-"], input=rendered[script], capture_output=True, check=True
    ).stdout.decode("utf-8")
    text = unicodedata.normalize("NFKC", text)
    name, history = PATIENTS[script]
    if script in EXACT:
        assert name in text and history in text
    else:
        assert not _letters(name) - _letters(text)
        assert not _letters(history) - _letters(text)
