"""QIDO-RS (PS3.18 §10.6) over the instance index: query keys, matching, result attributes.

Matching follows PS3.4 C.2.2.2: single value (exact), a `*`/`?` wild card, a date range
(`20250101-20250331`, open at either end) and a UID list (`uid1,uid2` or `uid1\\uid2`).
Study-level searches also match `ModalitiesInStudy` against the modalities of all its series.
Keys may be keywords or tags (`PatientID` or `00100020`); keys this service does not know are
ignored and named in a `Warning` header (PS3.18 §8.3.4.3.1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from service.errors import BadRequest
from service.store.dicom_records import DicomEntry

Level = Literal["study", "series", "instance"]
MAX_LIMIT = 1000
_STUDY = (
    "SpecificCharacterSet", "StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName",
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyID", "StudyDescription",
)  # fmt: skip
_SERIES = ("Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber")
_INSTANCE = ("SOPClassUID", "SOPInstanceUID", "InstanceNumber")
#: Keys a search may use at each level (besides limit, offset, includefield, fuzzymatching).
KEYS: dict[Level, tuple[str, ...]] = {
    "study": (*_STUDY, "ModalitiesInStudy"),
    "series": (*_STUDY, *_SERIES),
    "instance": (*_STUDY, *_SERIES, *_INSTANCE),
}
#: Index columns an exact value of these keys can be pushed down to.
PUSH_DOWN = {
    "StudyInstanceUID": "study_uid",
    "SeriesInstanceUID": "series_uid",
    "SOPInstanceUID": "sop_uid",
    "PatientID": "patient_id",
}
_CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}


@dataclass(frozen=True)
class Query:
    """A parsed search: matching keys (keyword → value), paging, ignored parameters."""

    keys: dict[str, str]
    limit: int
    offset: int
    ignored: tuple[str, ...] = ()

    def filters(self) -> dict[str, str]:
        """Exact-match filters for `JobStore.search_dicom`."""
        return {
            PUSH_DOWN[k]: v
            for k, v in self.keys.items()
            if k in PUSH_DOWN and v and not _is_pattern(v) and not re.search(r"[\\,]", v)
        }


def parse_query(params: Iterable[tuple[str, str]], level: Level, path: Mapping[str, str]) -> Query:
    """Query parameters (and UIDs from the path) → a `Query`; 400 for a bad limit or offset."""
    keys, ignored = dict(path), []
    limit, offset = MAX_LIMIT, 0
    for name, value in params:
        if name == "limit":
            limit = _count(name, value, 1)
        elif name == "offset":
            offset = _count(name, value, 0)
        elif name in _CONTROL:
            continue
        else:
            keyword = _keyword(name)
            if keyword in KEYS[level]:
                keys.setdefault(keyword, value)
            else:
                ignored.append(name[:64])
    return Query(keys, min(limit, MAX_LIMIT), offset, tuple(ignored))


def search(
    entries: list[DicomEntry], level: Level, query: Query, base: str
) -> list[dict[str, Any]]:
    """The matching studies, series or instances as DICOM JSON, paged."""
    groups: dict[tuple[str, ...], list[DicomEntry]] = {}
    for entry in entries:
        key = {
            "study": (entry.study_uid,),
            "series": (entry.study_uid, entry.series_uid),
            "instance": (entry.study_uid, entry.series_uid, entry.sop_uid),
        }[level]
        groups.setdefault(key, []).append(entry)
    results = [
        _result(members, level, base) for members in groups.values() if _matches(members, query)
    ]
    return results[query.offset : query.offset + query.limit]


def _matches(members: list[DicomEntry], query: Query) -> bool:
    attrs = members[0].attrs
    for keyword, wanted in query.keys.items():
        if not wanted:
            continue  # an empty key only asks for the attribute to be returned
        if keyword == "ModalitiesInStudy":
            if not {m.modality for m in members} & set(re.split(r"[\\,]", wanted)):
                return False
        elif not any(_match(value, wanted, keyword) for value in _values(attrs, keyword)):
            return False
    return True


def _match(actual: str, wanted: str, keyword: str) -> bool:
    vr = dictionary_VR(tag_for_keyword(keyword) or 0)
    if vr == "UI":
        return actual in re.split(r"[\\,]", wanted)
    if vr in ("DA", "TM", "DT") and "-" in wanted:
        low, _, high = wanted.partition("-")
        return bool(actual) and (not low or actual >= low) and (not high or actual <= high)
    if _is_pattern(wanted):
        pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in wanted)
        flags = re.IGNORECASE if vr == "PN" else 0
        return re.fullmatch(pattern, actual, flags) is not None
    return actual == wanted if vr != "PN" else actual.lower() == wanted.lower()


def _result(members: list[DicomEntry], level: Level, base: str) -> dict[str, Any]:
    first = members[0]
    names = {"study": _STUDY, "series": (*_SERIES, "StudyInstanceUID"), "instance": ()}[level]
    if level == "instance":
        names = (*_STUDY, *_SERIES, *_INSTANCE)
    body = {_tag(k): first.attrs[_tag(k)] for k in names if _tag(k) in first.attrs}
    url = f"{base}/studies/{first.study_uid}"
    if level == "study":
        body["00080061"] = {"vr": "CS", "Value": sorted({m.modality for m in members} - {""})}
        body["00201206"] = {"vr": "IS", "Value": [len({m.series_uid for m in members})]}
        body["00201208"] = {"vr": "IS", "Value": [len(members)]}
    elif level == "series":
        url += f"/series/{first.series_uid}"
        body["00201209"] = {"vr": "IS", "Value": [len(members)]}
    else:
        url += f"/series/{first.series_uid}/instances/{first.sop_uid}"
    body["00081190"] = {"vr": "UR", "Value": [url]}
    return dict(sorted(body.items()))


def _values(attrs: dict[str, Any], keyword: str) -> list[str]:
    """The first value as text; each component group of a PN (any of them may match)."""
    element = attrs.get(_tag(keyword)) or {}
    value = (element.get("Value") or [""])[0]
    if isinstance(value, dict):  # PN: {"Alphabetic": …, "Ideographic": …, "Phonetic": …}
        return [str(v) for v in value.values()] or [""]
    return [str(value)]


def _keyword(name: str) -> str:
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        return keyword_for_tag(int(name, 16)) or name
    return name


def _tag(keyword: str) -> str:
    return f"{tag_for_keyword(keyword):08X}"


def _is_pattern(value: str) -> bool:
    return "*" in value or "?" in value


def _count(name: str, value: str, minimum: int) -> int:
    if not value.isdigit() or int(value) < minimum:
        raise BadRequest(f"{name} must be an integer ≥ {minimum}")
    return int(value)
