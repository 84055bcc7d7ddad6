"""DICOMweb: STOW-RS (store → one pipeline job per instance) and WADO-RS of what was stored.

The store response is PS3.18 DICOM JSON; the jobs and reports of each stored instance are
announced in `Link` headers (anchored at the instance's SOP Instance UID), so strict DICOM JSON
parsers see only standard attributes.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath

from service.api.rest import services_of
from service.bootstrap import Services
from service.dicomweb.stow import (
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
    StoreOutcome,
    failure_reason,
    link_header,
    store_response,
    store_status,
)
from service.errors import NotFound, ServiceError
from service.intake.dicom import DicomImage, decode_dicom
from service.intake.images import ImageLimits
from service.intake.multipart_related import parse_multipart_related
from service.logging import get_logger
from service.pipeline.case import CaseInput, new_case_id
from service.pipeline.links import case_links
from service.report.i18n import negotiate_language

DICOM_JSON = "application/dicom+json"
log = get_logger(__name__)


def start_instance_job(
    services: Services, dicom: DicomImage, raw: bytes, language: str
) -> StoreOutcome:
    """Run one stored instance through the pipeline as a job; keep its bytes for WADO-RS."""
    case = CaseInput(
        case_id=new_case_id(),
        image=dicom.image,
        source=dicom.source_image(),
        patient=dicom.patient,
        history=None,
        language=language,
        origin={"dicom": dicom},
    )
    sop_uid = dicom.source.get("SOPInstanceUID", "")
    job_id = services.jobs.start(case, kind="stow", meta={"sop_instance_uid": sop_uid})
    services.store.put_artifact(job_id, "source-dicom", "application/dicom", raw)
    links = case_links(job_id)
    study = dicom.source.get("StudyInstanceUID", "")
    series = dicom.source.get("SeriesInstanceUID", "")
    return StoreOutcome(
        sop_class_uid=dicom.source.get("SOPClassUID", ""),
        sop_instance_uid=sop_uid,
        retrieve_url=f"/dicomweb/studies/{study}/series/{series}/instances/{sop_uid}",
        links={"monitor": links["events"], "related": links["report"], "alternate": links["dicom"]},
    )


def failed(error: ServiceError, raw: bytes) -> StoreOutcome:
    """A FailedSOPSequence entry; the UIDs are read from the header when possible."""
    sop_class, sop_instance = "", ""
    try:
        from pydicom import dcmread
        from pydicom.filebase import DicomBytesIO

        header = dcmread(DicomBytesIO(raw), stop_before_pixels=True, force=False)
        sop_class = str(header.get("SOPClassUID", ""))
        sop_instance = str(header.get("SOPInstanceUID", ""))
    except Exception:
        pass
    return StoreOutcome(sop_class, sop_instance, failure_reason=failure_reason(error))


class DicomWebController(Controller):
    """`/dicomweb`: STOW-RS and instance retrieval."""

    path = "/dicomweb"
    tags = ["dicomweb"]

    @post("/studies", status_code=200)
    async def store(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """STOW-RS: `multipart/related; type="application/dicom"`."""
        return await self._store(request, None)

    @post("/studies/{study:str}", status_code=200)
    async def store_in_study(
        self, request: Request[Any, Any, Any], study: FromPath[str]
    ) -> Response[Any]:
        """STOW-RS into a given study (instances of another study are refused)."""
        return await self._store(request, study)

    async def _store(self, request: Request[Any, Any, Any], study: str | None) -> Response[Any]:
        services = services_of(request)
        settings = services.settings
        parts = parse_multipart_related(
            request.headers.get("content-type", ""), await request.body()
        )
        limits = ImageLimits(settings.max_image_pixels, settings.min_image_side)
        language = negotiate_language(
            request.headers.get("accept-language"), settings.default_language
        )
        outcomes: list[StoreOutcome] = []
        studies: list[str] = []
        for part in parts:
            try:
                dicom = decode_dicom(part.body, limits)
            except ServiceError as error:
                outcomes.append(failed(error, part.body))
                continue
            if study and dicom.source.get("StudyInstanceUID") != study:
                outcomes.append(
                    StoreOutcome(
                        dicom.source.get("SOPClassUID", ""),
                        dicom.source.get("SOPInstanceUID", ""),
                        failure_reason=DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                    )
                )
                continue
            outcomes.append(start_instance_job(services, dicom, part.body, language))
            studies.append(dicom.source.get("StudyInstanceUID", ""))
        log.info("stow", instances=len(outcomes), stored=sum(o.stored for o in outcomes))
        study_uid = study or (studies[0] if len(set(studies)) == 1 else None)
        body = store_response(study_uid, "/dicomweb", outcomes)
        headers = {}
        if link := link_header(outcomes):
            headers["Link"] = link
        return Response(
            body, status_code=store_status(outcomes), media_type=DICOM_JSON, headers=headers
        )

    @get("/studies/{study:str}/series/{series:str}/instances/{instance:str}")
    async def retrieve(
        self,
        request: Request[Any, Any, Any],
        study: FromPath[str],
        series: FromPath[str],
        instance: FromPath[str],
    ) -> Response[Any]:
        """WADO-RS: a stored instance as `multipart/related; type="application/dicom"`."""
        services = services_of(request)
        job = services.store.find_job("stow", "sop_instance_uid", instance)
        stored = services.store.get_artifact(job.id, "source-dicom") if job else None
        if stored is None:
            raise NotFound(f"instance {instance[:64]} is not stored here")
        boundary = f"skinscreen-{job.id}" if job else "skinscreen"
        body = (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + stored[1]
            + f"\r\n--{boundary}--\r\n".encode()
        )
        media_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
        return Response(body, media_type=media_type)
