"""The teach use cases behind the REST routes: examples, fine-tune jobs, rollback and restore."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from hands.record import HandRecord
from service.core import ServingCore
from service.errors import ConflictError, InvalidInputError, NotFoundError
from service.hand_reader import HandReader
from service.registry import verdicts
from service.settings import ServeSettings
from service.teach.examples import Example, ExampleStore
from service.teach.jobs import Job, JobRunner

log = logging.getLogger(__name__)
MIN_PER_LABEL = 2  # one to train on, one held back for the gate


class TeachCore:
    def __init__(self, settings: ServeSettings, core: ServingCore) -> None:
        self.settings = settings
        self.core = core
        self.store = ExampleStore(settings.data_root, max_bytes=settings.teach_max_example_bytes,
                                  max_per_label=settings.teach_max_examples_per_label,
                                  max_pixels=settings.max_image_pixels, min_side=settings.min_image_side)
        self.runner = JobRunner(settings.data_root, on_version=self._picked_up)

    # -- lifecycle -------------------------------------------------------------------------
    def recover(self, names: list[str]) -> None:
        """Before the registries' first scan: no temporary export or example survives a restart."""
        for name in names:
            self.store.clean(name)
            base = self._base(name, required=False)
            if base is not None:
                self.runner.recover(name, base)

    async def stop(self) -> None:
        await self.runner.stop()

    # -- helpers ---------------------------------------------------------------------------
    def _base(self, name: str, *, required: bool = True) -> Path | None:
        base_path = self.core.backend.base_path(name)
        if base_path is None and required:
            raise InvalidInputError("teaching needs the local backend (IMGCLF_BACKEND=local): the versions "
                                    "are written to the model's folder")
        return base_path

    def labels(self, name: str) -> tuple[str, ...]:
        return self.core.registry_for(name).resolve().labels

    # -- examples --------------------------------------------------------------------------
    async def add_example(self, name: str, label: str, data: bytes) -> dict[str, Any]:
        labels = self.labels(name)
        example, created = await asyncio.to_thread(self.store.add, name, labels, label, data)
        hand = self.store.hand_found(name, example)
        if hand is None and self.core.hand_reader is not None:
            hand = await asyncio.get_running_loop().run_in_executor(
                self.core.decoder, self._read_hand, self.core.hand_reader, name, example)
        return {"id": example.id, "label": example.label, "created": created, "hand": hand,
                **await asyncio.to_thread(self._counts, name, labels)}

    def _read_hand(self, reader: HandReader, name: str, example: Example) -> bool | None:
        """In a decode thread: the hand stage on the stored example, its record written beside it. None when
        the stage could not read it (the fine-tune then runs the stage itself)."""
        try:
            hand, _, _ = reader.read(example.path.read_bytes(), max_pixels=self.settings.max_image_pixels,
                                     min_side=self.settings.min_image_side)
        except (OSError, InvalidInputError) as exc:  # deleted meanwhile, or unreadable to the stage
            log.warning("hand stage on example %s of %s: %s", example.id, name, exc)
            return None
        record = HandRecord(None) if hand is None else HandRecord(hand.landmarks, hand.handedness, hand.score)
        return record.found if self.store.keep_hand(name, example, record) else None

    def _counts(self, name: str, labels: tuple[str, ...]) -> dict[str, Any]:
        """Examples per label, and those of them with no hand found (the image model alone learns from them)."""
        return {"counts": self.store.counts(name, labels), "without_hand": self.store.without_hand(name, labels)}

    async def list_examples(self, name: str) -> dict[str, Any]:
        labels = self.labels(name)

        def listing() -> dict[str, Any]:  # reads every example's hand record once: off the event loop
            examples = self.store.all(name)
            return {"model": name, "labels": list(labels), **self._counts(name, labels), "total": len(examples),
                    "max_per_label": self.store.max_per_label,
                    "examples": [{"id": e.id, "label": e.label, "hand": self.store.hand_found(name, e)}
                                 for e in examples]}

        return await asyncio.to_thread(listing)

    def example_file(self, name: str, example_id: str) -> Path:
        self.core.registry_for(name)
        return self.store.get(name, example_id).path

    def delete_example(self, name: str, example_id: str) -> dict[str, Any]:
        labels = self.labels(name)
        removed = self.store.remove(name, example_id)
        return {"deleted": [removed.id], **self._counts(name, labels)}

    def clear_examples(self, name: str) -> dict[str, Any]:
        labels = self.labels(name)
        if self.runner.running is not None and self.runner.running.model == name:
            raise ConflictError("a fine-tune job is reading the examples; cancel it or wait")
        return {"deleted": self.store.clear(name), **self._counts(name, labels)}

    # -- fine-tunes ------------------------------------------------------------------------
    async def start_finetune(self, name: str) -> Job:
        base = self._base(name)
        assert base is not None
        served = self.core.registry_for(name).resolve()
        counts = self.store.counts(name, served.labels)
        taught = {k: n for k, n in counts.items() if n}
        if not taught:
            # the request is fine; the examples stored so far are not enough (409, like a running job)
            raise ConflictError(f"no examples to learn from: add at least {MIN_PER_LABEL} per label first")
        short = {k: n for k, n in taught.items() if n < MIN_PER_LABEL}
        if short:
            raise ConflictError(f"labels {sorted(short)} have fewer than {MIN_PER_LABEL} examples (one is held "
                                    "back to check the new version); add more or delete them")
        s = self.settings
        args = ["--init-from", str(base / str(served.version)), "--data", str(self.store.folder(name)),
                "--model-root", str(base.parent), "--name", base.name, "--base-data", s.teach_base_data,
                "--epochs", str(s.teach_epochs), "--threads", str(s.teach_job_threads),
                "--tolerance-points", str(s.gate_tolerance_points)]
        return await self.runner.start(name, served.version, args)

    async def _picked_up(self, name: str, version: int) -> bool:
        registry = self.core.registry_for(name)
        await registry.poll_once()
        return version in registry.available_versions()

    # -- rollback --------------------------------------------------------------------------
    async def rollback(self, name: str) -> dict[str, Any]:
        """Withdraw the version that answers requests by default; the newest earlier one takes over."""
        base = self._base(name)
        assert base is not None
        registry = self.core.registry_for(name)
        current = registry.resolve().version
        from version_format.layout import scan_versions

        refused = await asyncio.to_thread(verdicts.refusals, base, scan_versions(base))
        earlier = [v for v in scan_versions(base) if v < current and v not in refused
                   and not (v in registry.versions and registry.versions[v].error)]
        if not earlier:
            raise ConflictError(f"version {current} is the only version that can serve; nothing to roll back to")
        await asyncio.to_thread(verdicts.withdraw, base, current, "rolled back")
        await registry.poll_once()
        return {"withdrawn": current, "serving": registry.available_versions()}

    async def restore(self, name: str, version: int) -> dict[str, Any]:
        base = self._base(name)
        assert base is not None
        registry = self.core.registry_for(name)
        if not await asyncio.to_thread(verdicts.restore, base, version):
            raise NotFoundError(f"version {version} of {name!r} is not withdrawn")
        await registry.poll_once()
        return {"restored": version, "serving": registry.available_versions()}

    def withdrawn(self, name: str) -> dict[str, Any]:
        base = self._base(name)
        assert base is not None
        self.core.registry_for(name)
        return {"withdrawn": {str(k): v for k, v in verdicts.withdrawn(base).items()}}


