"""Versioned model registry: poll, load, warm up, swap atomically, drain and unload."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service import heap
from service.backends.base import Backend, Runtime
from service.errors import NotFoundError, UnavailableError
from service.metrics import Metrics
from service.priority import lower_compute_threads, lower_this_thread
from service.registry import verdicts
from service.registry.batching import Batcher, BatchStats
from service.registry.gate import GateRejected, ReferenceGate
from service.registry.model_config import ModelSpec
from service.settings import ServeSettings

log = logging.getLogger(__name__)

# TF Serving's ModelVersionStatus states; a failed load ends in END with its error.
LOADING, AVAILABLE, UNLOADING, END = "LOADING", "AVAILABLE", "UNLOADING", "END"
STATES = (LOADING, AVAILABLE, UNLOADING, END)


@dataclass
class ServedVersion:
    version: int
    fingerprint: str
    state: str = LOADING
    error: str | None = None
    model: Runtime | None = None
    batcher: Batcher | None = None
    updated: float = field(default_factory=time.time)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.model.info.labels if self.model else ()


class ModelRegistry:
    """Keeps the versions its spec's policy asks for loaded, for one model name.

    A version takes traffic only after it loaded and answered its warm-up calls; until
    then the previous one keeps serving. A version that fails stays out (its status shows
    the error) until its files change.
    """

    def __init__(self, spec: ModelSpec, settings: ServeSettings, backend: Backend, metrics: Metrics,
                 inference_executor: Executor) -> None:
        self.spec = spec
        self.settings = settings
        self.name = spec.name
        self.backend = backend
        self.metrics = metrics
        self._inference = inference_executor
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="imgclf-load", initializer=lower_this_thread,
                                          initargs=(settings.inference_nice,))
        self.versions: dict[int, ServedVersion] = {}  # every version seen, for status
        self._serving: dict[int, ServedVersion] = {}  # AVAILABLE ones only: the routing table
        self._poll_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.last_poll_error: str | None = None
        self._refused: dict[int, str] = {}  # versions the quality gate rejected or an operator withdrew
        self.gate = (ReferenceGate(settings.gate_reference, settings.gate_tolerance_points)
                     if settings.gate_reference is not None else None)

    async def update(self, spec: ModelSpec) -> None:
        """A new policy and labels from an edited config, without a failed request on the way:
        load what the new policy adds, then move the labels, then unload what it drops."""
        self.spec = dataclasses.replace(spec, labels=self.spec.labels)
        await self.poll_once(unload=False)
        missing = {k: v for k, v in spec.labels.items() if v not in self._serving}
        if missing:
            log.warning("model %s: labels %s point at versions that are not available", self.name, missing)
        self.spec = spec
        await self.poll_once()

    # -- routing ---------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return bool(self._serving)

    def resolve(self, version: int | None = None, label: str | None = None) -> ServedVersion:
        """The version a request goes to: a number, a label (both: the label must name that version), or the
        newest available."""
        if label is not None:
            if label not in self.spec.labels:
                raise NotFoundError(f"unknown version label {label!r} for model {self.name!r}")
            if version is not None and self.spec.labels[label] != version:
                raise NotFoundError(f"version label {label!r} of model {self.name!r} is version "
                                    f"{self.spec.labels[label]}, not {version}")
            version = self.spec.labels[label]
        if version is not None:
            served = self._serving.get(version)
            if served is None:
                seen = self.versions.get(version)
                detail = f" (state {seen.state}{': ' + seen.error if seen.error else ''})" if seen else ""
                raise NotFoundError(f"version {version} of model {self.name!r} is not available{detail}")
            return served
        if not self._serving:
            reason = self.backend.unreachable  # e.g. TF Serving is down
            raise UnavailableError(f"model {self.name!r} has no version loaded yet"
                                   + (f" ({reason})" if reason else ""), retry_after=2)
        return self._serving[max(self._serving)]

    def available_versions(self) -> list[int]:
        return sorted(self._serving)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self.poll_once()
        self._poll_task = asyncio.get_running_loop().create_task(self._poll_forever())

    async def stop(self) -> None:
        if self._poll_task:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
        async with self._lock:
            for served in list(self._serving.values()):
                await self._unload(served)
        self._loader.shutdown(wait=False, cancel_futures=True)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the poller must outlive a bad scan
                self.last_poll_error = str(exc)
                log.exception("model poll failed")

    def _wanted(self, found: dict[int, str]) -> set[int]:
        """Apply the version policy; failed versions do not count, so they never displace."""
        usable = sorted(v for v, fp in found.items()
                        if not (v in self.versions and self.versions[v].error
                                and self.versions[v].fingerprint == fp))
        s = self.spec
        if s.policy == "all":
            return set(usable)
        if s.policy == "specific":
            return set(usable) & set(s.specific_versions)
        return set(usable[-s.latest_versions:])

    async def poll_once(self, *, unload: bool = True) -> None:
        async with self._lock:
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(self._loader, self.backend.discover, self.name)
            found = self._admit(found, await loop.run_in_executor(self._loader, self._read_refusals, found))
            self.last_poll_error = None
            wanted = self._wanted(found)
            # newest first, so the version that will take default traffic is ready soonest
            for version in sorted(wanted, reverse=True):
                current = self._serving.get(version)
                if current is None or current.fingerprint != found[version]:
                    await self._load(version, found[version])
            keep_old = not unload or not any(v in self._serving for v in wanted)  # nothing better is up yet
            for version, served in list(self._serving.items()):
                if version not in found or (version not in wanted and not keep_old):
                    await self._unload(served)

    def _read_refusals(self, found: dict[int, str]) -> dict[int, str]:
        base_path = self.backend.base_path(self.name)  # local files; TF Serving keeps its own list
        return verdicts.refusals(base_path, found) if base_path is not None else {}

    def _admit(self, found: dict[int, str], refused: dict[int, str]) -> dict[int, str]:
        """Refused versions show in the status with their reason and are never loaded; a serving one
        that gets refused (a rollback) is unloaded like a deleted one, after its replacement is up."""
        for version, reason in refused.items():
            seen = self.versions.get(version)
            if seen is None or seen.error != reason:
                self.versions[version] = ServedVersion(version, found[version], state=END, error=reason)
                self.metrics.set_state(self.name, version, END, STATES)
                log.info("version %d of %s is not served: %s", version, self.name, reason)
        for version in set(self._refused) - set(refused):  # restored: judged afresh
            if (seen := self.versions.get(version)) is not None and seen.error == self._refused[version]:
                del self.versions[version]
        self._refused = refused
        return {v: fp for v, fp in found.items() if v not in refused}

    def _public(self, text: str) -> str:
        root = self.settings.model_root
        for path in sorted({str(root.resolve()), str(root.absolute()), str(root)}, key=len, reverse=True):
            if path not in ("", "."):
                text = text.replace(path, "<model-root>")
        return text

    async def _load(self, version: int, fingerprint: str) -> None:
        served = ServedVersion(version, fingerprint)
        self.versions[version] = served
        self.metrics.set_state(self.name, version, LOADING, STATES)
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        log.info("loading %s version %d", self.name, version)
        try:
            model = await loop.run_in_executor(self._loader, self.backend.load, self.name, version)
            await loop.run_in_executor(self._loader, self._warm_up, model)
            incumbent = self._serving.get(max(self._serving)) if self._serving else None
            if self.gate is not None and incumbent is not None and incumbent.model and version > incumbent.version:
                try:  # loaded and warm, not yet taking traffic: the one place every new version passes
                    log.info("gate: %s", await loop.run_in_executor(self._loader, self.gate.check, model,
                                                                    incumbent.model))
                except Exception:
                    await loop.run_in_executor(self._loader, model.close)
                    raise
            lower_compute_threads(self.settings.inference_nice)  # the runtime's pools exist once a model has run
            heap.freeze()
        except Exception as exc:
            detail = str(exc) if isinstance(exc, GateRejected) else f"{type(exc).__name__}: {exc}"
            # clients see the status: paths on the server's disk stay in the server's log
            served.state, served.error, served.updated = END, self._public(detail), time.time()
            self.metrics.set_state(self.name, version, END, STATES)
            self.metrics.load_failures.labels(self.name, str(version)).inc()
            log.error("version %d of %s failed to load; still serving %s: %s", version, self.name,
                      self.available_versions() or "nothing", detail)
            return
        queue_gauge = self.metrics.queue_depth.labels(self.name, str(version))

        def on_batch(size: int) -> None:
            self.metrics.record_batch(self.name, version, size)

        stats = BatchStats(on_batch=on_batch, on_queue=queue_gauge.set)
        s = self.settings
        served.model = model
        # a runtime may want shorter calls than the setting allows (the int8 one does), never longer
        batch = min(s.max_batch_size, model.info.max_batch_size or s.max_batch_size)
        served.batcher = Batcher(model.predict, self._inference, max_batch_size=batch,
                                 max_delay_s=s.max_batch_delay_s, max_queue=s.max_queue_size,
                                 concurrency=s.inference_threads, stats=stats, name=str(version),
                                 max_batch_pixels=s.max_batch_pixels, adaptive_delay=True)
        served.state, served.updated = AVAILABLE, time.time()
        replaced = self._serving.get(version)  # the same number rewritten in place
        self._serving[version] = served  # the swap: one dict assignment on the event loop
        if replaced is not None:
            await self._unload(replaced, route=False)
        self.metrics.set_state(self.name, version, AVAILABLE, STATES)
        self.metrics.runtime.labels(self.name, str(version), model.info.runtime).set(1)
        self.metrics.load_seconds.observe(time.monotonic() - started)
        log.info("version %d of %s is AVAILABLE (loaded and warmed in %.1f s)", version, self.name,
                 time.monotonic() - started)

    def _warm_up(self, model: Runtime) -> None:
        """A few real calls before traffic: pays graph tracing and checks the outputs."""
        images = model.info.warmup_images or [_fallback_image()]
        for i in range(self.settings.warmup_requests):
            batch = images if i % 2 == 0 else images[:1]
            scores = model.predict(batch)
            if scores.shape != (len(batch), len(model.info.labels)) or not np.isfinite(scores).all():
                raise ValueError(f"warm-up produced scores of shape {scores.shape} for "
                                 f"{len(batch)} images and {len(model.info.labels)} labels")

    async def _unload(self, served: ServedVersion, *, route: bool = True) -> None:
        if route:
            self._serving.pop(served.version, None)  # no new requests from here on
        served.state, served.updated = UNLOADING, time.time()
        if route:
            self.metrics.set_state(self.name, served.version, UNLOADING, STATES)
        if served.batcher:
            await served.batcher.close()  # in-flight requests finish first
        if served.model:
            self.metrics.runtime.labels(self.name, str(served.version), served.model.info.runtime).set(0)
            await asyncio.get_running_loop().run_in_executor(self._loader, served.model.close)
        served.model, served.batcher = None, None
        await asyncio.get_running_loop().run_in_executor(self._loader, heap.collect_and_freeze)
        served.state, served.updated = END, time.time()
        if route:
            self.metrics.set_state(self.name, served.version, END, STATES)
        log.info("version %d of %s unloaded", served.version, self.name)


def _fallback_image() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 160, 120)).save(buf, format="PNG")
    return buf.getvalue()
