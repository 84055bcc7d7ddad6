"""Clinician review (sign-off) of a finished report: a new version of every output.

`ReviewDesk.review(job_id, review_input, client)`:
1. reads the lossless report record of the latest version (`report-record`) and the case;
2. claims the next version number atomically across replicas (`JobStore.use_once`): two
   clinicians signing the same version at once → one wins, the other gets 409 and reloads;
3. keeps the current version's artifacts under `<kind>@<version>` (FHIR, PDF, JSON, DICOM);
4. re-renders the PDF with the "Reviewed by … on …" block, re-issues the FHIR DiagnosticReport
   (final / amended, codes, reviewer, Provenance) and the DICOM objects (a new SOP instance in
   the same study and series), and replaces the current artifacts;
5. appends `report.reviewed` to the job's event stream.

The outputs are the run's own adapters minus the write-back to an EHR (a reviewed report is
fetched or searched by the EHR; pushing amendments is left to a later change).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pydicom

from service.errors import Conflict, NotFound
from service.images import off_loop
from service.intake.cases import Limits, decode_case
from service.intake.review import ReviewInput
from service.logging import get_logger
from service.pipeline import events as ev
from service.pipeline.case import Case, MemorySink
from service.pipeline.domain import Report, Review
from service.pipeline.links import case_links
from service.pipeline.ports import OutputAdapter, PipelineDeps
from service.pipeline.report_json import report_json, review_json
from service.pipeline.report_record import report_from_record, report_record
from service.pipeline.run import REPORT_RECORD
from service.store import JobStore

log = get_logger(__name__)

#: Artifacts that make one report version (kept under `<kind>@<n>` when superseded).
VERSIONED = ("fhir", "pdf", "report", REPORT_RECORD, "dicom", "dicom-sr", "fhir-bundle")
#: How long a claimed version number stays claimed: long enough to serialise two reviews
#: signed at once, short enough that a review cut off by a crash can be redone.
_CLAIM_S = 300


def versioned_kind(kind: str, version: int) -> str:
    """Where version `version` of artifact `kind` is kept once superseded."""
    return f"{kind}@{version}"


class ReviewDesk:
    """Records reviews and re-issues the outputs; one per process (wired in bootstrap)."""

    def __init__(
        self,
        store: JobStore,
        deps: PipelineDeps,
        limits: Limits,
        outputs: Sequence[OutputAdapter],
    ) -> None:
        self.store = store
        self.deps = deps
        self.limits = limits
        self.outputs = list(outputs)

    async def current(self, job_id: str) -> Report:
        """The latest version of a finished diagnose job's report (404 / 409 otherwise)."""
        job = await self.store.get_job(job_id)
        if job is None:
            raise NotFound(f"no report {job_id[:64]}")
        stored = await self.store.get_artifact(job_id, REPORT_RECORD)
        if stored is None:
            if job.status != "completed":
                raise Conflict(f"report {job_id} is not ready (job {job.status})")
            raise Conflict(f"report {job_id} predates clinician review and cannot be reviewed")
        return report_from_record(stored[1])

    async def review(self, job_id: str, given: ReviewInput, client: str | None) -> Report:
        """Record `given` as the next version of the report; returns the reviewed report."""
        started = time.perf_counter()
        report = await self.current(job_id)
        version = report.version + 1
        if not await self.store.use_once(f"review:{job_id}:{version}", time.time() + _CLAIM_S):
            raise Conflict(
                f"report {job_id} was reviewed by someone else just now (version {version}); "
                "reload it and review the latest version"
            )
        stored_case = await self.store.get_case(job_id)
        if stored_case is None:
            raise NotFound(f"no case for report {job_id[:64]}")
        case = Case.from_record(*stored_case)
        reviewed = _with_review(report, given, version, client)
        artifacts = await self._reissue(job_id, reviewed, case)
        await self._keep_version(job_id, report.version)
        # the record says which version is current: written last, so a crash part-way leaves
        # the earlier version current (and its claim expires, so the review can be redone)
        record = artifacts.pop(REPORT_RECORD)
        for kind, (media_type, content) in [*artifacts.items(), (REPORT_RECORD, record)]:
            await self.store.put_artifact(job_id, kind, media_type, content)
        status = "amended" if given.decision == "revise" else "final"
        await self.store.append_event(
            job_id,
            ev.REPORT_REVIEWED,
            {
                "id": job_id,
                "review": review_json(reviewed.review) if reviewed.review else {},
                "status": status,
                "links": case_links(job_id),
            },
        )
        log.info(
            "report.reviewed",
            case_id=job_id,
            decision=given.decision,
            version=version,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return reviewed

    async def _reissue(self, job_id: str, report: Report, case: Case) -> dict[str, Any]:
        """PDF, report JSON and record, and every output's artifacts for the reviewed report."""
        image = await off_loop(self.limits.image, decode_case, case, self.limits)
        heatmap = await self.store.get_artifact(job_id, "heatmap")
        attachments = [a for output in self.outputs for a in output.attachments(report, case)]
        pdf = await asyncio.to_thread(
            self.deps.renderer.render, report, image, heatmap[1] if heatmap else None, attachments
        )
        sink = MemorySink()
        sink.put("pdf", "application/pdf", pdf)
        sink.put("report", "application/json", _json(report_json(report)))
        sink.put(REPORT_RECORD, "application/json", report_record(report))
        for output in self.outputs:
            await output.write(report, pdf, case, sink)
        for kind, (media_type, content) in list(sink.items.items()):
            if media_type == "application/dicom":
                previous = await self.store.get_artifact(job_id, kind)
                if previous is not None:
                    sink.items[kind] = (media_type, _same_study(content, previous[1]))
        return sink.items

    async def _keep_version(self, job_id: str, version: int) -> None:
        for kind in VERSIONED:
            stored = await self.store.get_artifact(job_id, kind)
            if stored is not None:
                await self.store.put_artifact(job_id, versioned_kind(kind, version), *stored)

    async def version_of(self, job_id: str, version: int, kind: str) -> tuple[str, bytes] | None:
        """Artifact `kind` of report version `version` (the current one or a kept one)."""
        return await self._stored(job_id, version, kind, (await self.current(job_id)).version)

    async def history(self, job_id: str, kind: str) -> list[tuple[int, bytes]]:
        """(version, content) of artifact `kind` for every version, newest first."""
        latest = (await self.current(job_id)).version
        found = []
        for version in range(latest, 0, -1):
            stored = await self._stored(job_id, version, kind, latest)
            if stored is not None:
                found.append((version, stored[1]))
        return found

    async def _stored(
        self, job_id: str, version: int, kind: str, latest: int
    ) -> tuple[str, bytes] | None:
        if version == latest:
            return await self.store.get_artifact(job_id, kind)
        if 1 <= version < latest:
            return await self.store.get_artifact(job_id, versioned_kind(kind, version))
        return None


def _with_review(report: Report, given: ReviewInput, version: int, client: str | None) -> Report:
    finding = {"confirm": report.classification.label, "revise": given.finding}.get(given.decision)
    review = Review(
        reviewer=given.reviewer,
        reviewer_id=given.reviewer_id,
        decision=given.decision,
        finding=finding,
        comment=given.comment,
        reviewed_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        version=version,
        client=client,
    )
    earlier = (*report.earlier_reviews, report.review) if report.review else ()
    return replace(report, review=review, earlier_reviews=earlier)


def _same_study(content: bytes, previous: bytes) -> bytes:
    """A re-issued DICOM object joins the study and series of the one it supersedes (its own
    SOP instance UID is new), with the next instance number."""
    old = pydicom.dcmread(io.BytesIO(previous), stop_before_pixels=True)
    new = pydicom.dcmread(io.BytesIO(content))
    new.StudyInstanceUID = old.StudyInstanceUID
    new.SeriesInstanceUID = old.SeriesInstanceUID
    new.InstanceNumber = int(old.get("InstanceNumber") or 1) + 1
    buffer = io.BytesIO()
    new.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, indent=2).encode("utf-8")
