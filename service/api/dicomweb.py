"""DICOMweb: STOW-RS (store → one pipeline job per instance) and WADO-RS of what was stored.

The store response is PS3.18 DICOM JSON; the jobs and reports of each stored instance are
announced in `Link` headers (anchored at the instance's SOP Instance UID), so strict DICOM JSON
parsers see only standard attributes.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath

from service.api.auth import principal_of
from service.api.rest import services_of
from service.bootstrap import Services
from service.dicom.deflate import is_deflated, meta_uids
from service.dicom.multipart_related import parse_multipart_related
from service.dicom.preamble import zero_preamble
from service.dicom.stow import (
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
    StoreOutcome,
    failure_reason,
    link_header,
    store_response,
    store_status,
)
from service.errors import NotFound, ServiceError
from service.images import off_loop
from service.intake.cases import Intake, build_case, parse_language
from service.logging import get_logger
from service.pipeline.case import DICOM_MEDIA_TYPE, DicomOrigin, UploadOrigin
from service.pipeline.domain import Patient
from service.pipeline.links import case_links
from service.security import scopes as sc

DICOM_JSON = "application/dicom+json"
STORE = {"scopes": [sc.STORE_IMAGE, sc.CREATE_REPORT]}
RETRIEVE = {"scopes": [sc.READ_IMAGE]}
log = get_logger(__name__)


async def submit_instance(services: Services, intake: Intake, client: str) -> StoreOutcome:
    """Run one stored instance through the pipeline as a job (its bytes are the stored case)."""
    case = intake.case
    origin = case.origin
    assert isinstance(origin, DicomOrigin)  # DICOM bytes always make a DICOM case
    sop_uid = origin.sop_instance_uid
    submission = await services.jobs.submit(
        case, kind="stow", image=intake.rgb, meta={"sop_instance_uid": sop_uid}, client=client
    )
    job_id = submission.job_id
    links = case_links(job_id)
    study, series = origin.study_instance_uid, origin.series_instance_uid
    return StoreOutcome(
        sop_class_uid=origin.sop_class_uid,
        sop_instance_uid=sop_uid,
        retrieve_url=f"/dicomweb/studies/{study}/series/{series}/instances/{sop_uid}",
        links={"monitor": links["events"], "related": links["report"], "alternate": links["dicom"]},
    )


def failed(error: ServiceError, raw: bytes) -> StoreOutcome:
    """A FailedSOPSequence entry; the UIDs are read from the header when possible."""
    sop_class, sop_instance = "", ""
    if is_deflated(raw):  # read the File Meta only: inflating here would undo the budget
        sop_class, sop_instance = meta_uids(raw)
        return StoreOutcome(sop_class, sop_instance, failure_reason=failure_reason(error))
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

    @post("/studies", status_code=200, opt=STORE)
    async def store(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """STOW-RS: `multipart/related; type="application/dicom"`."""
        return await self._store(request, None)

    @post("/studies/{study:str}", status_code=200, opt=STORE)
    async def store_in_study(
        self, request: Request[Any, Any, Any], study: FromPath[str]
    ) -> Response[Any]:
        """STOW-RS into a given study (instances of another study are refused)."""
        return await self._store(request, study)

    async def _store(self, request: Request[Any, Any, Any], study: str | None) -> Response[Any]:
        services = services_of(request)
        parts = parse_multipart_related(
            request.headers.get("content-type", ""), await request.body()
        )
        limits = services.limits
        language = parse_language(None, request.headers.get("accept-language"), limits)
        outcomes: list[StoreOutcome] = []
        studies: list[str] = []
        for part in parts:
            try:
                intake = await off_loop(  # decoding is CPU work: never on the event loop
                    limits.image,
                    build_case,
                    part.body,
                    DICOM_MEDIA_TYPE,
                    patient=Patient(),
                    history=None,
                    language=language,
                    origin=UploadOrigin(),
                    limits=limits,
                )
            except ServiceError as error:
                outcomes.append(await off_loop(limits.image, failed, error, part.body))
                continue
            origin = intake.case.origin
            assert isinstance(origin, DicomOrigin)
            if study and origin.study_instance_uid != study:
                outcomes.append(
                    StoreOutcome(
                        origin.sop_class_uid,
                        origin.sop_instance_uid,
                        failure_reason=DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
                    )
                )
                continue
            try:
                outcomes.append(
                    await submit_instance(services, intake, principal_of(request).client_id)
                )
            except ServiceError as error:  # e.g. no capacity: this instance is not stored
                outcomes.append(failed(error, part.body))
                continue
            studies.append(origin.study_instance_uid)
        log.info("stow", instances=len(outcomes), stored=sum(o.stored for o in outcomes))
        study_uid = study or (studies[0] if len(set(studies)) == 1 else None)
        body = store_response(study_uid, "/dicomweb", outcomes)
        headers = {}
        if link := link_header(outcomes):
            headers["Link"] = link
        return Response(
            body, status_code=store_status(outcomes), media_type=DICOM_JSON, headers=headers
        )

    @get("/studies/{study:str}/series/{series:str}/instances/{instance:str}", opt=RETRIEVE)
    async def retrieve(
        self,
        request: Request[Any, Any, Any],
        study: FromPath[str],
        series: FromPath[str],
        instance: FromPath[str],
    ) -> Response[Any]:
        """WADO-RS: a stored instance as `multipart/related; type="application/dicom"`, its
        preamble zeroed (the stored case keeps the original bytes)."""
        services = services_of(request)
        job = await services.store.find_job("stow", "sop_instance_uid", instance)
        principal = principal_of(request)
        if job is not None and not principal.may_see(job.meta, sc.READ_IMAGE):
            job = None  # another client's instance: not stored here, as far as this caller knows
        case = await services.jobs.load_case(job.id) if job else None
        if job is None or case is None:
            raise NotFound(f"instance {instance[:64]} is not stored here")
        boundary = f"skinscreen-{job.id}"
        body = (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + zero_preamble(case.data)
            + f"\r\n--{boundary}--\r\n".encode()
        )
        media_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
        return Response(body, media_type=media_type)
