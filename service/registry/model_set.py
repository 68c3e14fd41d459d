"""The served models by name: from the settings or a models.config, re-applied when that file changes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import Executor

from service.backends.base import Backend
from service.errors import NotFoundError
from service.metrics import Metrics
from service.registry import model_config
from service.registry.model_config import ConfigError, ModelSpec
from service.registry.model_registry import ModelRegistry
from service.settings import ServeSettings

log = logging.getLogger(__name__)


class ModelSet:
    """One ModelRegistry per model name.

    With IMGCLF_MODEL_CONFIG the file is read at start (a bad file stops the start with its error)
    and then every poll interval: an edit adds, updates or removes models; a file that does not
    parse is logged and the last good config keeps serving, as TF Serving does.
    """

    def __init__(self, settings: ServeSettings, backend: Backend, metrics: Metrics, executor: Executor):
        self.settings = settings
        self.backend = backend
        self.metrics = metrics
        self.executor = executor
        self.registries: dict[str, ModelRegistry] = {}
        self._gating: set[str] = set()  # the start-up models: readiness waits for them only
        self._digest: str | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.last_config_error: str | None = None

    def get(self, name: str) -> ModelRegistry:
        registry = self.registries.get(name)
        if registry is None:
            raise NotFoundError(f"model {name!r} not found; this server serves {sorted(self.registries)}")
        return registry

    @property
    def ready(self) -> bool:
        gating = [r for n, r in self.registries.items() if n in self._gating] or list(self.registries.values())
        return bool(gating) and all(r.ready for r in gating)

    def read_config(self) -> list[ModelSpec]:
        """The models to start with; a bad models.config raises ConfigError (before any port is bound)."""
        path = self.settings.model_config_file
        if path is None:
            return model_config.from_settings(self.settings)
        self._digest, specs = model_config.read(path)
        return specs

    async def start(self, specs: list[ModelSpec] | None = None) -> None:
        await self.apply(specs if specs is not None else self.read_config())
        path = self.settings.model_config_file
        self._gating = set(self.registries)
        if path is not None:
            self._watch_task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._watch_task:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        for registry in list(self.registries.values()):
            await registry.stop()

    async def apply(self, specs: list[ModelSpec]) -> None:
        wanted = {s.name: s for s in specs}
        for name in [n for n in self.registries if n not in wanted]:
            log.info("model %s is no longer in the config: unloading it", name)
            registry = self.registries.pop(name)  # routing stops here; in-flight requests finish
            self._gating.discard(name)
            await registry.stop()
        for spec in specs:
            self.backend.set_base_path(spec.name, spec.base_path)
            current = self.registries.get(spec.name)
            if current is None:
                log.info("serving model %s from %s", spec.name, spec.base_path)
                added = ModelRegistry(spec, self.settings, self.backend, self.metrics, self.executor)
                self.registries[spec.name] = added
                await added.start()
            elif current.spec != spec:
                log.info("model %s: new policy or labels %s", spec.name, spec)
                await current.update(spec)

    async def _watch(self) -> None:
        path = self.settings.model_config_file
        assert path is not None
        while True:
            await asyncio.sleep(self.settings.poll_interval_s)
            try:
                digest, specs = await asyncio.to_thread(model_config.read, path)
            except ConfigError as exc:
                if str(exc) != self.last_config_error:
                    log.error("%s; still serving the last good config: %s", exc, sorted(self.registries))
                self.last_config_error = str(exc)
                continue
            self.last_config_error = None
            if digest == self._digest:
                continue
            self._digest = digest
            log.info("model config %s changed: %s", path, [s.name for s in specs])
            try:
                await self.apply(specs)
            except asyncio.CancelledError:
                raise
            except Exception:  # the watcher must outlive a bad apply
                log.exception("applying model config %s failed", path)
