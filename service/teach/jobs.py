"""Fine-tune jobs: one at a time, each in its own lower-priority process, watched, cancellable, recorded."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from service.errors import ConflictError, NotFoundError
from version_format.atomic import atomic_write
from version_format.layout import TMP_PREFIX

log = logging.getLogger(__name__)

RUNNING, SUCCEEDED, REJECTED, FAILED, CANCELLED, INTERRUPTED = (
    "running", "succeeded", "rejected", "failed", "cancelled", "interrupted")
FINAL = (SUCCEEDED, REJECTED, FAILED, CANCELLED, INTERRUPTED)
_PR_SET_PDEATHSIG = 1


@dataclass
class Job:
    id: str
    model: str
    base_version: int
    state: str = RUNNING
    created: float = field(default_factory=time.time)
    finished: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # accuracy per epoch, for late viewers

    def public(self) -> dict[str, Any]:
        return asdict(self)


def _child_setup(niceness: int) -> Callable[[], None]:
    def setup() -> None:
        # the job dies with the server (a restart mid-job leaves no orphan that publishes later)
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        os.nice(niceness)
    return setup


class JobRunner:
    """Starts `python -m training.finetune` for a model, reads its JSON lines, keeps the job's state.

    `on_version` is awaited with (model, version) once a job published a version, so the registry
    can pick it up without waiting for its next poll; it answers whether that version now serves.
    """

    def __init__(self, data_root: Path, *, niceness: int = 10,
                 on_version: Callable[[str, int], Awaitable[bool]] | None = None) -> None:
        self.data_root = Path(data_root)
        self.niceness = niceness
        self.on_version = on_version
        self.jobs: dict[str, Job] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._running: Job | None = None
        self._changed = asyncio.Condition()
        self._cancelling = False

    def _record(self, job: Job) -> Path:
        return self.data_root / job.model / "jobs" / f"{job.id}.json"

    def _save(self, job: Job) -> None:
        path = self._record(job)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(job.public(), indent=1))

    def recover(self, model: str, model_base: Path) -> None:
        """At start: jobs a stopped server left running are marked interrupted, and the temporary
        folders of exports they never finished are removed (no half version survives)."""
        if model_base.is_dir():
            for tmp in model_base.glob(TMP_PREFIX + "*"):
                log.info("removing %s, left by an export that did not finish", tmp.name)
                shutil.rmtree(tmp, ignore_errors=True)
        folder = self.data_root / model / "jobs"
        for record in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                job = Job(**json.loads(record.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if job.state == RUNNING:
                job.state, job.finished = INTERRUPTED, time.time()
                job.error = "the server stopped while this job ran; no version was published"
                self._save(job)
            self.jobs[job.id] = job

    @property
    def running(self) -> Job | None:
        return self._running

    def get(self, model: str, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None or job.model != model:
            raise NotFoundError(f"no fine-tune job {job_id!r} for model {model!r}")
        return job

    def of_model(self, model: str) -> list[Job]:
        return sorted((j for j in self.jobs.values() if j.model == model), key=lambda j: j.created, reverse=True)

    async def start(self, model: str, base_version: int, args: list[str]) -> Job:
        if self._running is not None:
            raise ConflictError(f"fine-tune job {self._running.id} is still running; cancel it or wait")
        job = Job(uuid.uuid4().hex[:12], model, base_version, progress={"fraction": 0.0, "phase": "starting"})
        self.jobs[job.id] = job
        self._running = job
        self._cancelling = False
        self._save(job)
        log_dir = self._record(job).parent
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        try:
            with open(log_dir / f"{job.id}.log", "wb") as stderr:  # TensorFlow's chatter, for the operator
                self._proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "training.finetune", "--nice", "0", *args,
                    stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env,
                    preexec_fn=_child_setup(self.niceness))
        except BaseException:
            self._running = None
            job.state, job.error, job.finished = FAILED, "the job process could not start", time.time()
            self._save(job)
            raise
        self._task = asyncio.get_running_loop().create_task(self._watch(job, self._proc))
        log.info("fine-tune job %s started for %s from version %d (pid %d)", job.id, model, base_version,
                 self._proc.pid)
        return job

    async def _watch(self, job: Job, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        done: dict[str, Any] | None = None
        error: str | None = None
        async for raw in proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if event.get("event") == "done":
                done = event
            elif event.get("event") == "error":
                error = str(event.get("error"))
            else:
                job.progress = {k: v for k, v in event.items() if k != "event"}
                if event.get("phase") == "train":
                    keys = ("epoch", "epochs", "accuracy", "holdout_accuracy")
                    job.history.append({k: event[k] for k in keys if k in event})
            await self._notify()
        code = await proc.wait()
        serving = False
        if done is not None and code == 0 and self.on_version is not None:
            job.progress = {"phase": "swap", "fraction": 0.97}
            await self._notify()
            try:  # load, warm up and swap now rather than at the next poll
                serving = await self.on_version(job.model, int(done["version"]))
            except Exception:
                log.exception("picking up version %s of %s failed", done.get("version"), job.model)
        job.finished = time.time()
        if self._cancelling and done is None:
            job.state = CANCELLED
        elif done is not None and code == 0:
            job.result = {k: v for k, v in done.items() if k not in ("event", "path", "fraction")}
            job.result["serving"] = serving
            job.result["finished_in_s"] = round(job.finished - job.created, 1)
            job.progress = {"phase": "done", "fraction": 1.0}
            promoted = bool(done.get("gate", {}).get("promoted"))
            job.state = SUCCEEDED if promoted else REJECTED
        else:
            job.state = FAILED
            job.error = error or f"the job process exited with code {code}; see the server's job log"
        self._save(job)
        self._running, self._proc = None, None
        await self._notify()
        log.info("fine-tune job %s ended: %s", job.id, job.state)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def cancel(self, model: str, job_id: str) -> Job:
        job = self.get(model, job_id)
        if job.state != RUNNING or self._proc is None:
            return job  # already over: cancelling is idempotent
        self._cancelling = True
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(signal.SIGTERM)  # the job removes its temporary export folder
        if self._task is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), 20)
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
        return job

    async def stop(self) -> None:
        """On shutdown: a running job is cancelled (and recorded as interrupted)."""
        job = self._running
        if job is not None:
            await self.cancel(job.model, job.id)
            job.state, job.error = INTERRUPTED, "the server stopped while this job ran; no version was published"
            self._save(job)

    async def events(self, model: str, job_id: str, *, until: float) -> AsyncIterator[dict[str, Any]]:
        """The job's state now, then after every change, until it ends or `until` (monotonic) passes."""
        job = self.get(model, job_id)
        last = None
        while True:
            snapshot = json.dumps(job.public(), sort_keys=True)
            if snapshot != last:
                last = snapshot
                yield job.public()
            if job.state in FINAL and job is not self._running:
                return
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            async with self._changed:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(remaining, 5.0))
