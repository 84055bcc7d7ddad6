"""DICOMweb reads of everything stored — source photos, Encapsulated PDFs, SRs: QIDO-RS
(studies, series, instances as `application/dicom+json`) and WADO-RS (a study, series or
instance as `multipart/related; type="application/dicom"`, or its metadata).

Both read the instance index (`dicom.catalog`, brought up to date first) restricted to the
caller's own objects (`Principal.may_see`: another client's instances do not exist for it). The
UIDs in a path must all match: an instance asked for under another study or series is a 404.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath

from service.api.auth import principal_of
from service.api.rest import services_of
from service.dicom.catalog import instance_bytes, refresh
from service.dicom.preamble import zero_preamble
from service.dicom.qido import Level, parse_query, search
from service.errors import NotFound
from service.security import scopes as sc
from service.settings import Settings
from service.store.dicom_records import DicomEntry

DICOM_JSON = "application/dicom+json"
READ = {"scopes": [sc.READ_IMAGE]}


def dicomweb_root(settings: Settings) -> str:
    """Absolute DICOMweb root for RetrieveURLs: `public_base_url`, else the listening address
    from the settings (never the request's Host header)."""
    base = settings.public_base_url
    if not base:
        host = settings.host if settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        base = f"http://{'[' + host + ']' if ':' in host else host}:{settings.port}"
    return f"{base.rstrip('/')}/dicomweb"


async def visible(request: Request[Any, Any, Any], filters: dict[str, str]) -> list[DicomEntry]:
    """Index rows the caller may see that match `filters` (index refreshed first)."""
    services, principal = services_of(request), principal_of(request)
    await refresh(services.store)
    client = None if principal.sees_all(sc.READ_IMAGE) else principal.client_id
    unique: dict[str, DicomEntry] = {}  # an instance stored twice (two STOWs) is served once
    for entry in await services.store.search_dicom(client, filters):
        unique.setdefault(entry.sop_uid, entry)
    return list(unique.values())


async def _qido(request: Request[Any, Any, Any], level: Level, **path: str) -> Response[Any]:
    keys = {
        "StudyInstanceUID": path.get("study", ""),
        "SeriesInstanceUID": path.get("series", ""),
    }
    query = parse_query(request.query_params.items(), level, {k: v for k, v in keys.items() if v})
    entries = await visible(request, query.filters())
    body = search(entries, level, query, dicomweb_root(services_of(request).settings))
    headers = {}
    if query.ignored:
        names = ", ".join(query.ignored)
        headers["Warning"] = f'299 skinscreen "query keys not supported, ignored: {names}"'
    return Response(body, media_type=DICOM_JSON, headers=headers)


async def _instances(
    request: Request[Any, Any, Any], study: str, series: str | None = None, sop: str | None = None
) -> list[DicomEntry]:
    filters = {"study_uid": study}
    if series is not None:
        filters["series_uid"] = series
    if sop is not None:
        filters["sop_uid"] = sop
    entries = await visible(request, filters)
    if not entries:
        what = "instance" if sop else "series" if series else "study"
        raise NotFound(f"{what} {(sop or series or study)[:64]} is not stored here")
    return entries


async def _wado(request: Request[Any, Any, Any], entries: list[DicomEntry]) -> Response[Any]:
    store = services_of(request).store
    boundary = f"skinscreen-{entries[0].job_id}"
    parts = []
    for entry in entries:
        data = await instance_bytes(store, entry)
        if data is not None:
            head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            parts.append(head + zero_preamble(data) + b"\r\n")
    if not parts:
        raise NotFound("the instances are no longer stored here")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    media_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return Response(body, media_type=media_type)


def _metadata(entries: list[DicomEntry]) -> Response[Any]:
    return Response([e.attrs for e in entries], media_type=DICOM_JSON)


class DicomWebReads:
    """QIDO-RS and WADO-RS handlers, mixed into `api.dicomweb.DicomWebController` (one
    controller per path: Litestar adds one OPTIONS handler for each)."""

    @get("/studies", opt=READ)
    async def search_studies(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """QIDO-RS: studies."""
        return await _qido(request, "study")

    @get("/series", opt=READ)
    async def search_series(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """QIDO-RS: series of every study."""
        return await _qido(request, "series")

    @get("/instances", opt=READ)
    async def search_instances(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """QIDO-RS: instances of every study."""
        return await _qido(request, "instance")

    @get("/studies/{study:str}/series", opt=READ)
    async def search_study_series(
        self, request: Request[Any, Any, Any], study: FromPath[str]
    ) -> Response[Any]:
        """QIDO-RS: series of a study."""
        return await _qido(request, "series", study=study)

    @get("/studies/{study:str}/instances", opt=READ)
    async def search_study_instances(
        self, request: Request[Any, Any, Any], study: FromPath[str]
    ) -> Response[Any]:
        """QIDO-RS: instances of a study."""
        return await _qido(request, "instance", study=study)

    @get("/studies/{study:str}/series/{series:str}/instances", opt=READ)
    async def search_series_instances(
        self, request: Request[Any, Any, Any], study: FromPath[str], series: FromPath[str]
    ) -> Response[Any]:
        """QIDO-RS: instances of a series."""
        return await _qido(request, "instance", study=study, series=series)

    @get("/studies/{study:str}", opt=READ)
    async def retrieve_study(
        self, request: Request[Any, Any, Any], study: FromPath[str]
    ) -> Response[Any]:
        """WADO-RS: every instance of a study."""
        return await _wado(request, await _instances(request, study))

    @get("/studies/{study:str}/series/{series:str}", opt=READ)
    async def retrieve_series(
        self, request: Request[Any, Any, Any], study: FromPath[str], series: FromPath[str]
    ) -> Response[Any]:
        """WADO-RS: every instance of a series."""
        return await _wado(request, await _instances(request, study, series))

    @get("/studies/{study:str}/series/{series:str}/instances/{instance:str}", opt=READ)
    async def retrieve(
        self,
        request: Request[Any, Any, Any],
        study: FromPath[str],
        series: FromPath[str],
        instance: FromPath[str],
    ) -> Response[Any]:
        """WADO-RS: one instance, its preamble zeroed (the store keeps the original bytes)."""
        return await _wado(request, await _instances(request, study, series, instance))

    @get("/studies/{study:str}/metadata", opt=READ)
    async def study_metadata(
        self, request: Request[Any, Any, Any], study: FromPath[str]
    ) -> Response[Any]:
        """WADO-RS: the metadata (DICOM JSON, no bulk data) of a study's instances."""
        return _metadata(await _instances(request, study))

    @get("/studies/{study:str}/series/{series:str}/metadata", opt=READ)
    async def series_metadata(
        self, request: Request[Any, Any, Any], study: FromPath[str], series: FromPath[str]
    ) -> Response[Any]:
        """WADO-RS: the metadata of a series' instances."""
        return _metadata(await _instances(request, study, series))

    @get("/studies/{study:str}/series/{series:str}/instances/{instance:str}/metadata", opt=READ)
    async def instance_metadata(
        self,
        request: Request[Any, Any, Any],
        study: FromPath[str],
        series: FromPath[str],
        instance: FromPath[str],
    ) -> Response[Any]:
        """WADO-RS: the metadata of one instance."""
        return _metadata(await _instances(request, study, series, instance))
