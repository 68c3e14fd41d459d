"""The transport-agnostic core: every REST route and gRPC method calls one of these methods."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service import request_log
from service.backends.base import Backend, Decoder, ModelInfo, PoseScorer
from service.errors import DeadlineError, InvalidInputError, NotFoundError, PayloadTooLargeError
from service.hand_reader import HandOut, HandReader
from service.images import check_image, header_pixels
from service.metrics import Metrics
from service.priority import lower_this_thread
from service.registry.model_config import ModelSpec
from service.registry.model_registry import STATES, ModelRegistry, ServedVersion
from service.registry.model_set import ModelSet
from service.settings import ServeSettings

Decode = Decoder  # bytes -> (model input, pixels held), raising InvalidInputError


POSE, CNN = "pose", "cnn"  # what answered an image: the pose classifier on its hand, or the image CNN


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    scores: dict[str, float]
    path: str = CNN
    hand: HandOut | None = None


@dataclass(frozen=True)
class ClassifyResult:
    model_name: str
    model_version: int
    labels: tuple[str, ...]
    scores: np.ndarray  # float32 [n_images, n_labels], label order
    paths: tuple[str, ...] = ()  # per image, POSE or CNN (empty: all CNN, the hand stage did not run)
    hands: tuple[HandOut | None, ...] = ()  # per image, when the hand stage ran

    @property
    def predictions(self) -> list[Prediction]:
        out = []
        for i, row in enumerate(self.scores.tolist()):  # Python floats at once: numpy calls per element cost more
            best = max(range(len(row)), key=row.__getitem__)  # the first of equal maxima, as argmax
            out.append(Prediction(self.labels[best], row[best], dict(zip(self.labels, row, strict=True)),
                                  self.paths[i] if self.paths else CNN, self.hands[i] if self.hands else None))
        return out


@dataclass(frozen=True)
class HandReading:
    """One image through the hand stage: its hand, its pixels, and the pose classifier's scores for the hand
    (None when no hand was found or the version has no pose classifier)."""

    hand: HandOut | None
    pixels: int
    pose: np.ndarray | None


VERSION_STATES = STATES  # TF Serving's ModelVersionStatus states, as the transports report them


@dataclass(frozen=True)
class VersionStatus:
    """One version as the transports show it: TF Serving's state, and what answers it once loaded."""

    version: int
    state: str
    error: str | None
    labels: tuple[str, ...] = ()
    runtime: str | None = None  # None until loaded
    runtime_note: str | None = None
    card: dict[str, Any] = field(default_factory=dict)


@dataclass
class InferStats:
    """Per model version, for Triton's statistics extension: outcomes, their time, images."""

    success_count: int = 0
    success_ns: int = 0
    fail_count: int = 0
    fail_ns: int = 0
    inference_count: int = 0
    last_inference_ms: int = 0


class ServingCore:
    """Classification, model status and metadata, liveness and readiness, for every served model."""

    def __init__(self, settings: ServeSettings, backend: Backend, metrics: Metrics | None = None):
        self.settings = settings
        self.metrics = metrics or Metrics()
        # model calls at a lower priority too (measured under overload: the refusals' p99 was lower
        # with these threads lowered than with only TensorFlow's own pools lowered)
        self.executor = ThreadPoolExecutor(settings.inference_threads, thread_name_prefix="imgclf-infer",
                                           initializer=lower_this_thread,
                                           initargs=(settings.inference_nice,))
        # one thread checks big uploads: a flood of huge images queues here instead of taking
        # every core from the model and from small requests (checked on the loop)
        self.checker = ThreadPoolExecutor(1, thread_name_prefix="imgclf-check")
        # litert versions decode and resize here (Pillow releases the GIL), beside the model calls
        self.decoder = ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="imgclf-decode")
        self.backend = backend
        # the hand stage's models load once here (tens of milliseconds); each decode thread makes its own
        # interpreters on its first picture
        self.hand_reader = HandReader(settings.hands_budget_ms) if settings.hands != "off" else None
        self.models_set = ModelSet(settings, backend, self.metrics, self.executor)
        self.started = time.time()
        self.draining = False
        self.stats: dict[tuple[str, int], InferStats] = {}

    async def start(self, specs: list[ModelSpec] | None = None) -> None:
        await self.models_set.start(specs)

    async def stop(self) -> None:
        self.draining = True
        await self.models_set.stop()
        self.executor.shutdown(wait=True)
        self.checker.shutdown(wait=False, cancel_futures=True)
        self.decoder.shutdown(wait=False, cancel_futures=True)
        self.backend.close()  # e.g. the TF Serving channel

    # -- health ----------------------------------------------------------------------------
    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.models_set.ready and not self.draining

    # -- lookups ---------------------------------------------------------------------------
    def registry_for(self, name: str) -> ModelRegistry:
        return self.models_set.get(name)

    @property
    def default_model(self) -> str:
        """What a request without a model name gets: IMGCLF_MODEL_NAME if served, else the first model."""
        names = self.models()
        return self.settings.model_name if self.settings.model_name in names or not names else names[0]

    @property
    def registry(self) -> ModelRegistry:
        return self.registry_for(self.default_model)

    def models(self) -> list[str]:
        return list(self.models_set.registries)

    def available_versions(self, name: str) -> list[int]:
        return self.registry_for(name).available_versions()

    def model_ready(self, name: str, version: int | None = None) -> bool:
        """A model is ready when it (or the given version) can take requests now."""
        versions = self.available_versions(name)
        return not self.draining and (version in versions if version is not None else bool(versions))

    def model_info(self, name: str, version: int | None = None,
                   label: str | None = None) -> ModelInfo:
        served = self.registry_for(name).resolve(version, label)
        assert served.model is not None
        return served.model.info

    def statuses(self, name: str, version: int | None = None, label: str | None = None, *,
                 allow_empty: bool = False) -> list[VersionStatus]:
        """Every version seen (or the one asked for), newest first, with TF Serving's states."""
        registry = self.registry_for(name)
        if label is not None:
            version = registry.resolve(None, label).version
        seen = registry.versions
        if version is not None:
            if version not in seen:
                raise NotFoundError(f"version {version} of model {name!r} not found")
            picks = [seen[version]]
        else:
            picks = sorted(seen.values(), key=lambda s: s.version, reverse=True)
            if not picks and not allow_empty:
                where = (f"on TF Serving at {self.settings.tfserving_target}" if self.settings.backend == "tfserving"
                         else "in its model folder")  # no server paths to clients
                raise NotFoundError(f"model {name!r} has no versions {where}")
        return [VersionStatus(s.version, s.state, s.error, s.labels,
                              *((s.model.info.runtime, s.model.info.runtime_note, s.model.info.card) if s.model
                                else ()))
                for s in picks]

    def version_labels(self, name: str) -> dict[str, int]:
        """The model's version labels (models.config's version_labels), e.g. {"stable": 3}."""
        return dict(self.registry_for(name).spec.labels)

    def check_model(self, name: str) -> None:
        """Raises NotFoundError for a model this server does not serve."""
        self.registry_for(name)

    def has_seen(self, name: str, version: int) -> bool:
        """Whether the version was ever found (loaded, loading, failed or refused)."""
        return version in self.registry_for(name).versions

    # -- inference -------------------------------------------------------------------------
    async def classify(self, name: str, images: Sequence[bytes], *, version: int | None = None,
                       label: str | None = None, deadline: float | None = None) -> ClassifyResult:
        """Validate, queue for the batcher of the resolved version, and return scores.

        `deadline` is a time.monotonic() value (default: now + request_timeout_s); checking the
        images counts against it, and work still queued when it passes never reaches the model.
        """
        request_log.note(model=name, images=len(images))
        registry = self.registry_for(name)
        s = self.settings
        deadline = deadline if deadline is not None else time.monotonic() + s.request_timeout_s
        if not images:
            raise InvalidInputError("no images in the request")
        if len(images) > s.max_images_per_request:
            raise PayloadTooLargeError(f"{len(images)} images in one request; the limit is "
                                       f"{s.max_images_per_request}")
        first = registry.resolve(version, label)  # unknown version or label: 404 before any work
        assert first.batcher is not None
        first.batcher.check_room(len(images))  # overloaded: 429 before the images are checked
        started = time.perf_counter_ns()
        stats: InferStats | None = None
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                decode = first.model.decoder if first.model else None
                scores = None
                reader = self.hand_reader_for(first)
                if reader is not None:  # the hand stage first; the CNN answers the images without a hand
                    readings = await self._read_hands(reader, images, first.model.info.pose if first.model
                                                      else None)
                    served = registry.resolve(version, label)  # again: a swap may have happened
                    stats = self._counting(name, served.version)
                    if served is not first:
                        readings = await self._pose_again(readings, served)
                    scores, paths = await self._answer(served, images, readings, deadline)
                    hands = tuple(r.hand for r in readings)
                elif decode is not None and len(images) == 1 and first.batcher.idle:
                    # a lone image on an idle model: decoded and scored in one thread hop
                    served = first
                    stats = self._counting(name, served.version)
                    scores = await first.batcher.submit_alone(functools.partial(self._decode_one, decode,
                                                                                images[0]))
                    paths, hands = (), ()
                if scores is None:
                    paths, hands = (), ()
                    checked = await self._check_all(images, decode)
                    served = registry.resolve(version, label)  # again: a swap may have happened
                    now = served.model.decoder if served.model else None
                    if now is not decode:  # ... to another runtime
                        checked = await self._check_all(images, now)
                    assert served.batcher is not None
                    stats = self._counting(name, served.version)
                    scores = await served.batcher.submit([c[0] for c in checked], deadline - time.monotonic(),
                                                         [c[1] for c in checked])
        except BaseException as exc:
            # a client's bad image is not a failed inference, on whichever path it was found: queued
            # requests check their images before `stats` is picked, a lone image inside its one hop
            if stats is not None and not isinstance(exc, InvalidInputError | PayloadTooLargeError):
                stats.fail_count += 1
                stats.fail_ns += time.perf_counter_ns() - started
            if isinstance(exc, TimeoutError):
                raise DeadlineError(f"no answer within the {s.request_timeout_s:g} s deadline") from None
            raise
        assert stats is not None
        stats.success_count += 1
        stats.success_ns += time.perf_counter_ns() - started
        stats.inference_count += len(images)
        stats.last_inference_ms = int(time.time() * 1000)
        return ClassifyResult(name, served.version, served.labels, scores, paths, hands)

    def hand_reader_for(self, served: ServedVersion) -> HandReader | None:
        """The hand stage, if it runs for this version: IMGCLF_HANDS=on, or auto and a pose classifier."""
        if self.hand_reader is None or served.model is None:
            return None
        return self.hand_reader if self.settings.hands == "on" or served.model.info.pose is not None else None

    async def _read_hands(self, reader: HandReader, images: Sequence[bytes], pose: PoseScorer | None
                          ) -> list[HandReading]:
        """Every image checked (a bad one is refused before the stage runs) and read by the hand stage in
        the decode threads, one task per image; the pose classifier scores each hand in the same hop."""
        many = len(images) > 1
        loop = asyncio.get_running_loop()
        if many:
            await self._check_headers(images)
        readings = list(await asyncio.gather(*(
            loop.run_in_executor(self.decoder, self._read_one, reader, pose, data, i + 1 if many else 0)
            for i, data in enumerate(images))))
        self._check_total(sum(r.pixels for r in readings))
        return readings

    def _read_one(self, reader: HandReader, pose: PoseScorer | None, data: bytes, index: int) -> HandReading:
        s = self.settings
        hand, pixels, seconds = reader.read(data, max_pixels=s.max_image_pixels, min_side=s.min_image_side,
                                            index=index)
        self.metrics.hand_seconds.observe(seconds)
        scores = pose(hand.landmarks[None])[0] if hand is not None and pose is not None else None
        return HandReading(hand, pixels, scores)

    async def _pose_again(self, readings: list[HandReading], served: ServedVersion) -> list[HandReading]:
        """After a swap between the hand stage and the answer: the new version's pose classifier (or none)."""
        pose = served.model.info.pose if served.model else None
        found = [i for i, r in enumerate(readings) if r.hand is not None]
        if pose is None or not found:
            return [HandReading(r.hand, r.pixels, None) for r in readings]
        landmarks = np.stack([readings[i].hand.landmarks for i in found])  # type: ignore[union-attr]
        scores = await asyncio.get_running_loop().run_in_executor(self.decoder, pose, landmarks)
        out = [HandReading(r.hand, r.pixels, None) for r in readings]
        for row, i in zip(scores, found, strict=True):
            out[i] = HandReading(readings[i].hand, readings[i].pixels, row)
        return out

    async def _answer(self, served: ServedVersion, images: Sequence[bytes], readings: list[HandReading],
                      deadline: float) -> tuple[np.ndarray, tuple[str, ...]]:
        """Scores per image: the pose classifier's where it scored a hand, the CNN's (batched) elsewhere."""
        scores = np.zeros((len(images), len(served.labels)), np.float32)
        cnn = [i for i, r in enumerate(readings) if r.pose is None]
        for i, r in enumerate(readings):
            if r.pose is not None:
                scores[i] = r.pose
        if cnn:
            assert served.batcher is not None
            checked = await self._check_all([images[i] for i in cnn], served.model.decoder if served.model else None)
            scores[cnn] = await served.batcher.submit([c[0] for c in checked], deadline - time.monotonic(),
                                                      [c[1] for c in checked])
        paths = tuple(CNN if r.pose is None else POSE for r in readings)
        for path in (POSE, CNN):
            if count := paths.count(path):
                self.metrics.answers.labels(served.model.info.name if served.model else "", str(served.version),
                                            path).inc(count)
        return scores, paths

    async def _check_all(self, images: Sequence[bytes], decode: Decode | None = None) -> list[tuple[Any, int]]:
        """(what the model takes, pixels) per image: checked bytes, or pixels from the model's `decode`."""
        s = self.settings
        many = len(images) > 1
        checked: list[tuple[Any, int]]
        if decode is not None:
            loop = asyncio.get_running_loop()
            if many:
                await self._check_headers(images)
            # every image in its own task: one request's images decode on all decode threads at once
            checked = list(await asyncio.gather(*(
                loop.run_in_executor(self.decoder, functools.partial(
                    decode, data, max_pixels=s.max_image_pixels, min_side=s.min_image_side,
                    index=i + 1 if many else 0))
                for i, data in enumerate(images))))
        else:
            def check() -> list[tuple[Any, int]]:
                return [check_image(data, max_pixels=s.max_image_pixels, min_side=s.min_image_side,
                                    index=i + 1 if many else 0) for i, data in enumerate(images)]

            if sum(len(i) for i in images) > 256 * 1024:  # big inputs: check off the event loop
                checked = await asyncio.get_running_loop().run_in_executor(self.checker, check)
            else:
                checked = check()  # a webcam frame: ~1 ms, less than a hop to a thread and back under load
        self._check_total(sum(c[1] for c in checked))
        return checked

    async def _check_headers(self, images: Sequence[bytes]) -> None:
        """The request's pixel total from the images' headers, before any is decoded: no decoding past the 413."""
        s = self.settings
        sizes = await asyncio.get_running_loop().run_in_executor(self.decoder, functools.partial(
            header_pixels, images, max_pixels=s.max_image_pixels, min_side=s.min_image_side))
        self._check_total(sum(sizes))

    def _counting(self, name: str, version: int) -> InferStats:
        """The version that answers: into the request log, and its statistics to count the outcome in."""
        request_log.note(version=version)
        return self.stats.setdefault((name, version), InferStats())

    def _decode_one(self, decode: Decode, data: bytes) -> Any:
        """One image's pixels for the model, with the request's checks (runs on an inference thread)."""
        s = self.settings
        pixels, size = decode(data, max_pixels=s.max_image_pixels, min_side=s.min_image_side)
        self._check_total(size)
        return pixels

    def _check_total(self, total: int) -> None:
        if total > self.settings.max_request_pixels:
            raise PayloadTooLargeError(f"the request's images hold {total:,} pixels; the limit is "
                                       f"{self.settings.max_request_pixels:,} per request")
