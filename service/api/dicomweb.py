"""DICOMweb STOW-RS: store → one pipeline job per instance (reads: `dicomweb_read`).

The store response is PS3.18 DICOM JSON with absolute RetrieveURLs; the jobs and reports of each
stored instance are announced in `Link` headers (anchored at the instance's SOP Instance UID),
so strict DICOM JSON parsers see only standard attributes. A refused instance gets its specific
Failure Reason (0x0122 SOP class, 0xC122 transfer syntax, …); one stored with IOD errors gets
Warning Reason 0xB007, the answer is 202 and a `Warning` header names the missing attributes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from litestar import Controller, Request, Response, post
from litestar.params import FromPath
from pydicom.dataset import Dataset

from service.api.auth import principal_of
from service.api.dicomweb_read import DicomWebReads, dicomweb_root
from service.api.rest import services_of
from service.bootstrap import Services
from service.dicom.deflate import is_deflated, meta_uids
from service.dicom.iod_check import iod_problems
from service.dicom.multipart_related import parse_multipart_related
from service.dicom.stored_object import object_case, stored_as_is
from service.dicom.stow import (
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
    WARNING_DOES_NOT_MATCH_SOP_CLASS,
    StoreOutcome,
    failure_reason,
    link_header,
    read_header,
    store_response,
    store_status,
)
from service.errors import ServiceError
from service.images import off_loop
from service.intake.cases import Intake, build_case, parse_language
from service.logging import get_logger
from service.pipeline.case import DICOM_MEDIA_TYPE, DicomOrigin, UploadOrigin, new_case_id
from service.pipeline.domain import Patient
from service.pipeline.links import case_links
from service.security import scopes as sc

DICOM_JSON = "application/dicom+json"
STORE = {"scopes": [sc.STORE_IMAGE, sc.CREATE_REPORT]}
log = get_logger(__name__)


async def submit_instance(
    services: Services, intake: Intake, client: str, root: str = "/dicomweb"
) -> StoreOutcome:
    """Run one stored instance through the pipeline as a job (its bytes are the stored case);
    `root` is the absolute DICOMweb root of the RetrieveURL."""
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
        retrieve_url=f"{root}/studies/{study}/series/{series}/instances/{sop_uid}",
        links={"monitor": links["events"], "related": links["report"], "alternate": links["dicom"]},
    )


def failed(error: ServiceError, raw: bytes) -> StoreOutcome:
    """A FailedSOPSequence entry; the UIDs and the specific reason come from the header when
    it can be read (a deflated instance: from its File Meta only, never inflated here)."""
    if is_deflated(raw):
        sop_class, sop_instance = meta_uids(raw)
        return StoreOutcome(sop_class, sop_instance, failure_reason=failure_reason(error))
    header = read_header(raw)
    sop_class = str(header.get("SOPClassUID", "")) if header is not None else ""
    sop_instance = str(header.get("SOPInstanceUID", "")) if header is not None else ""
    return StoreOutcome(sop_class, sop_instance, failure_reason=failure_reason(error, header))


async def keep_object(
    services: Services, raw: bytes, header: Dataset, client: str, root: str, study: str | None
) -> StoreOutcome:
    """Store a report instance (Encapsulated PDF, Comprehensive SR) as it is: no job runs."""
    case = object_case(new_case_id(), raw, header)
    origin = case.origin
    assert isinstance(origin, DicomOrigin)
    uids = (origin.study_instance_uid, origin.series_instance_uid, origin.sop_instance_uid)
    if not all(uids) or (study and origin.study_instance_uid != study):
        return StoreOutcome(
            origin.sop_class_uid,
            origin.sop_instance_uid,
            failure_reason=DATA_SET_DOES_NOT_MATCH_SOP_CLASS,
        )
    meta = {"mode": "store", "client": client, "sop_instance_uid": origin.sop_instance_uid}
    await services.store.store_dicom_object(case.case_id, meta, case.record(), raw)
    return StoreOutcome(
        origin.sop_class_uid,
        origin.sop_instance_uid,
        retrieve_url=f"{root}/studies/{uids[0]}/series/{uids[1]}/instances/{uids[2]}",
    )


def with_iod_warning(outcome: StoreOutcome, raw: bytes) -> StoreOutcome:
    """The outcome of a stored instance, with Warning Reason 0xB007 when its IOD is incomplete."""
    header = read_header(raw)
    problems = tuple(iod_problems(header)) if header is not None else ()
    if not problems:
        return outcome
    return dataclasses.replace(
        outcome, warning_reason=WARNING_DOES_NOT_MATCH_SOP_CLASS, warnings=problems
    )


class DicomWebController(Controller, DicomWebReads):
    """`/dicomweb`: STOW-RS, and the QIDO-RS / WADO-RS reads of `DicomWebReads`."""

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
        root = dicomweb_root(services.settings)
        language = parse_language(None, request.headers.get("accept-language"), limits)
        outcomes: list[StoreOutcome] = []
        studies: list[str] = []
        client = principal_of(request).client_id
        for part in parts:
            header = read_header(part.body)
            if stored_as_is(header):
                assert header is not None
                outcome = await keep_object(services, part.body, header, client, root, study)
                outcomes.append(outcome)
                if outcome.stored:
                    studies.append(str(header.StudyInstanceUID))
                continue
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
                outcome = await submit_instance(services, intake, client, root)
                outcomes.append(with_iod_warning(outcome, part.body))
            except ServiceError as error:  # e.g. no capacity: this instance is not stored
                outcomes.append(failed(error, part.body))
                continue
            studies.append(origin.study_instance_uid)
        log.info("stow", instances=len(outcomes), stored=sum(o.stored for o in outcomes))
        study_uid = study or (studies[0] if len(set(studies)) == 1 else None)
        body = store_response(study_uid, root, outcomes)
        headers = {}
        if link := link_header(outcomes):
            headers["Link"] = link
        if warned := [o for o in outcomes if o.warnings]:
            problems = "; ".join(f"{o.sop_instance_uid}: {', '.join(o.warnings)}" for o in warned)
            headers["Warning"] = f'299 skinscreen "stored with IOD errors: {problems}"'[:4000]
        return Response(
            body, status_code=store_status(outcomes), media_type=DICOM_JSON, headers=headers
        )
