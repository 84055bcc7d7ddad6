"""`DicomOutput`: the report as DICOM — an Encapsulated PDF and a Comprehensive SR — per case,
pushed to a PACS by STOW-RS when `dicom_push_url` is set (`outputs.dicom_push`).

A case that came as DICOM gets both in the source study; any other case opens one new study for
both (UIDs derived from the case id). The patient of a FHIR case is named from its FHIR Patient
(PN `Family^Given`, Patient ID and Issuer of Patient ID from the identifier).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from pydicom import dcmread

from service.dicom.encapsulated_pdf import encapsulated_pdf
from service.dicom.identity import PatientIdentity, identity_from_fhir
from service.dicom.sr import structured_report
from service.dicom.subject import report_subject
from service.outputs.common import json_bytes, report_title
from service.outputs.dicom_push import PUSH, DicomPusher
from service.pipeline.case import ArtifactSink, Case, DicomOrigin, FhirOrigin
from service.pipeline.domain import Attachment, Report

DICOM = "application/dicom"
_POOL: Executor | None = None
_POOL_LOCK = threading.Lock()


def dicom_pool() -> Executor:
    """The one process that builds report instances for this process.

    Building an SR is ~0.1-0.5 s of pure-Python CPU (pydicom, highdicom); in a thread it holds
    the GIL so much that the event loop stalls (lease renewals, SSE) when many cases finish at
    once. A separate process (spawned, so no lock or thread is inherited) keeps the loop free.
    """
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_exit_with_parent,
                initargs=(os.getpid(),),
            )
        return _POOL


def _exit_with_parent(parent: int) -> None:
    """In the DICOM process: exit when the process that started it is gone (even SIGKILLed)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


async def build_instances(
    report: Report, pdf: bytes, case: Case, now: dt.datetime
) -> tuple[bytes, bytes]:
    """`report_instances` in the DICOM process (in a thread if that process is gone)."""
    global _POOL
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(dicom_pool(), report_instances, report, pdf, case, now)
    except BrokenProcessPool:
        with _POOL_LOCK:
            _POOL = None  # a new one next time
        return await asyncio.to_thread(report_instances, report, pdf, case, now)


#: Artifact kinds of the two report instances.
PDF_KIND, SR_KIND = "dicom", "dicom-sr"


def fhir_identity(case: Case) -> PatientIdentity | None:
    """PN and identifiers of the FHIR Patient a FHIR case carried or resolved, if any."""
    origin = case.origin
    if isinstance(origin, FhirOrigin) and isinstance(origin.subject_resource, dict):
        return identity_from_fhir(origin.subject_resource)
    return None


def report_instances(
    report: Report, pdf: bytes, case: Case, now: dt.datetime
) -> tuple[bytes, bytes]:
    """(Encapsulated PDF, Comprehensive SR) Part 10 bytes of one report."""
    source = case.origin if isinstance(case.origin, DicomOrigin) else None
    identity, seed = fhir_identity(case), case.case_id
    document = encapsulated_pdf(
        pdf,
        source,
        report.patient,
        report.classification.model,
        report.narrator,
        report_title(report),
        report.language,
        now,
        identity=identity,
        seed=seed,
        version=report.version,
    )
    header = dcmread(io.BytesIO(document), stop_before_pixels=True)
    subject = report_subject(source, report.patient, now, identity=identity, seed=seed)
    sr = structured_report(
        report,
        subject,
        source,
        now,
        seed=seed,
        evidence_sop_class=str(header.SOPClassUID),
        evidence_sop_instance=str(header.SOPInstanceUID),
    )
    return document, sr


class DicomOutput:
    """Writes the `dicom` (Encapsulated PDF) and `dicom-sr` (Comprehensive SR) artifacts, and
    pushes both to a PACS when a `DicomPusher` is configured (outcome: `dicom-push`)."""

    def __init__(self, push: DicomPusher | None = None) -> None:
        self.push = push

    def attachments(self, report: Report, case: Case) -> list[Attachment]:
        """Nothing to embed in the PDF."""
        return []

    async def write(self, report: Report, pdf: bytes, case: Case, sink: ArtifactSink) -> None:
        """Write both instances (same study as a DICOM source)."""
        now = dt.datetime.now(dt.UTC)
        document, sr = await build_instances(report, pdf, case, now)
        sink.put(PDF_KIND, DICOM, document)
        sink.put(SR_KIND, DICOM, sr)
        if self.push is not None:
            study = str(dcmread(io.BytesIO(sr), stop_before_pixels=True).StudyInstanceUID)
            try:
                outcome = (await self.push.push(study, [document, sr])).as_json()
            except Exception as error:  # a push failure must not lose the report
                outcome = {"status": "failed", "error": f"push failed ({type(error).__name__})"}
            sink.put(PUSH, "application/json", json_bytes(outcome))
