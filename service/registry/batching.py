"""Dynamic batching: coalesce concurrent requests into one model call, bounded in size, delay and queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service import request_log
from service.errors import (
    DeadlineError,
    InternalError,
    InvalidInputError,
    OverloadedError,
    ServiceError,
    UnavailableError,
)

log = logging.getLogger(__name__)

PredictFn = Callable[[Sequence[Any]], np.ndarray]  # encoded images, or pixels a runtime decoded


@dataclass
class _Item:
    images: list[Any]
    future: asyncio.Future[np.ndarray]
    deadline: float  # time.monotonic()
    pixels: int = 0
    enqueued: float = field(default_factory=time.monotonic)
    batch_size: int = 0  # images in the model call that answered it
    counted: bool = False  # its images count in the queue's size


@dataclass
class BatchStats:
    """Hooks for metrics; the batcher itself knows nothing about Prometheus."""

    on_batch: Callable[[int], None] = lambda size: None
    on_queue: Callable[[int], None] = lambda depth: None


class Batcher:
    """One per served version. `submit` never blocks on TensorFlow: model calls run in `executor`.

    When the model is idle a request goes straight in. Under load a batch closes when it holds
    `max_batch_size` images or `max_delay_s` after its first request arrived, whichever comes
    first; while every worker thread is busy, requests keep queuing, so batches grow with load.
    The queue is bounded in images: past it,
    requests fail at once with OverloadedError instead of waiting.
    """

    def __init__(self, predict: PredictFn, executor: Executor, *, max_batch_size: int = 32,
                 max_delay_s: float = 0.005, max_queue: int = 256, concurrency: int = 1,
                 stats: BatchStats | None = None, name: str = "", max_batch_pixels: int = 0,
                 adaptive_delay: bool = False) -> None:
        self._predict = predict
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.max_queue = max_queue
        self.max_batch_pixels = max_batch_pixels  # 0: no limit; else decode memory per call is bounded
        self._slots = asyncio.Semaphore(concurrency)
        # with adaptive_delay, a batch waits to fill at most one image's model time (measured):
        # for a ~1 ms int8 model, holding a free worker 5 ms for company costs more than it saves
        self.adaptive_delay = adaptive_delay
        self.per_image_s: float | None = None  # moving average of model time per image
        self._stats = stats or BatchStats()
        self._name = name
        self._queue: deque[_Item] = deque()
        self._queued_images = 0
        self._admitted = 0  # requests let in by admit() and not over yet
        self._wakeup = asyncio.Event()
        self._inflight: set[asyncio.Future[Any]] = set()
        self._closing = False
        self._worker = asyncio.get_running_loop().create_task(self._run(), name=f"batcher-{name}")

    @property
    def queued_images(self) -> int:
        return self._queued_images

    @property
    def idle(self) -> bool:
        return not self._queue and not self._inflight

    def admit(self) -> Callable[[], None]:
        """Let one request in from its head alone, or raise OverloadedError; call what it returns
        when the request is over. Requests let in this way count against the queue's limit from
        their first byte, not only once their images are decoded and queued: otherwise, at 3x
        capacity, hundreds pass the head check together and are refused later, after their body
        was read, which is slow for them and costly for everyone."""
        self.check_room(1)
        if self._admitted >= self.max_queue:
            raise OverloadedError(f"server busy: {self._admitted} requests in progress (limit {self.max_queue}); "
                                  "retry shortly", retry_after=1)
        self._admitted += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._admitted -= 1

        return release

    def check_room(self, images: int) -> None:
        """Raise at once when `images` more would not fit: cheap, so callers check before costly work."""
        if self._closing:
            raise UnavailableError("this model version is unloading; retry", retry_after=1)
        if self._queued_images + images > self.max_queue:
            raise OverloadedError(
                f"server busy: {self._queued_images} images queued (limit {self.max_queue}); "
                "retry shortly", retry_after=1)

    async def submit(self, images: Sequence[Any], timeout: float,
                     pixels: Sequence[int] | None = None) -> np.ndarray:
        """Scores for `images` (one row each), within `timeout` seconds; `pixels` per image."""
        if not images:
            raise InvalidInputError("no images in the request")
        self.check_room(len(images))
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        items = [_Item(chunk, loop.create_future(), deadline, size)
                 for chunk, size in self._chunks(images, pixels or [0] * len(images))]
        for item in items:  # enqueued before the first await: a swap cannot slip in between
            self._queue.append(item)
            self._queued_images += len(item.images)
            item.counted = True
        self._stats.on_queue(self._queued_images)
        self._wakeup.set()
        try:
            async with asyncio.timeout(timeout):
                parts = [await item.future for item in items]
            request_log.note(batch_size=max(item.batch_size for item in items))
        except TimeoutError:
            raise DeadlineError(f"no answer within the {timeout:.3g} s deadline") from None
        finally:
            # on a deadline, an error or a cancelled caller (client gone): work nobody waits for
            # never reaches the model, and its room in the queue is free at once, not only when
            # the worker next takes a batch (after a crowd of clients leaves, newcomers would
            # otherwise be refused for a whole model call)
            left = False
            for item in items:
                item.future.cancel()
                left = self._uncount(item) or left
            if left:
                self._stats.on_queue(self._queued_images)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def submit_alone(self, prepare: Callable[[], Any]) -> np.ndarray | None:
        """When the model is idle, one image's `prepare()` (its decode) and its model call run
        together on one inference thread: one hop to a thread and back instead of two, which is most
        of what a lone request waits for besides the work. None when the model is busy: the caller
        then submits as usual, so batching under load is unchanged. The call counts as a batch in
        flight (requests that arrive meanwhile queue, and close() waits for it)."""
        if not self.idle or self._slots.locked() or self._closing:
            return None
        await self._slots.acquire()  # free: returns at once, without yielding to the loop
        loop = asyncio.get_running_loop()

        def call() -> np.ndarray:
            image = prepare()
            started = time.monotonic()  # the model's time alone, as for a batch: it sets the fill wait
            scores = self._predict([image])
            self._note_time(time.monotonic() - started, 1)
            return scores

        work = loop.run_in_executor(self._executor, call)
        self._inflight.add(work)  # close() waits for it as for a batch's task

        def done(fut: asyncio.Future[np.ndarray]) -> None:
            # when the thread is done, not when the caller stops waiting: a cancelled caller must
            # not free the slot while the model still runs
            self._inflight.discard(fut)
            self._slots.release()
            if not fut.cancelled() and fut.exception() is None:
                self._stats.on_batch(1)

        work.add_done_callback(done)
        try:
            scores = await asyncio.shield(work)
        except ServiceError:
            raise
        except Exception as exc:  # a model crash, as in a batch: the caller gets a 500, the batcher lives on
            raise self._crashed(exc, 1) from None
        if (wrong := _wrong_rows(scores, 1)) is not None:
            raise wrong
        request_log.note(batch_size=1)
        return scores

    def _crashed(self, exc: Exception, images: int) -> InternalError:
        """What every caller of a model call that raised gets (logged once, with its traceback)."""
        log.exception("model call failed for %d image(s) (%s)", images, self._name)
        return InternalError(f"model call failed: {type(exc).__name__}: {exc}")

    def _note_time(self, seconds: float, images: int) -> None:
        per_image = seconds / max(1, images)
        self.per_image_s = per_image if self.per_image_s is None else 0.8 * self.per_image_s + 0.2 * per_image

    def _chunks(self, images: Sequence[Any], pixels: Sequence[int]) -> list[tuple[list[Any], int]]:
        """Split a request into model calls of at most max_batch_size images and max_batch_pixels."""
        chunks: list[tuple[list[Any], int]] = []
        current: list[Any] = []
        size = 0
        for image, n in zip(images, pixels, strict=True):
            if current and (len(current) == self.max_batch_size
                            or (self.max_batch_pixels and size + n > self.max_batch_pixels)):
                chunks.append((current, size))
                current, size = [], 0
            current.append(image)
            size += n
        chunks.append((current, size))
        return chunks

    async def close(self) -> None:
        """Stop taking requests, finish queued and in-flight work, then stop the worker."""
        self._closing = True
        self._wakeup.set()
        await self._worker
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    def _uncount(self, item: _Item) -> bool:
        """Stop counting a request's images in the queue's size; whether they still counted."""
        if not item.counted:
            return False
        item.counted = False
        self._queued_images -= len(item.images)
        return True

    def _take(self) -> list[_Item]:
        """Pop whole requests up to max_batch_size images; expired or cancelled ones are dropped."""
        batch: list[_Item] = []
        size = pixels = 0
        now = time.monotonic()
        while self._queue:
            item = self._queue[0]
            if item.future.done() or item.deadline <= now:
                self._queue.popleft()
                self._uncount(item)
                if not item.future.done():
                    item.future.set_exception(DeadlineError("deadline passed while queued"))
                continue
            if batch and (size + len(item.images) > self.max_batch_size
                          or (self.max_batch_pixels and pixels + item.pixels > self.max_batch_pixels)):
                break
            self._queue.popleft()
            self._uncount(item)
            batch.append(item)
            size += len(item.images)
            pixels += item.pixels
        self._stats.on_queue(self._queued_images)
        return batch

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._slots.acquire()  # while all threads are busy, the queue keeps growing
            # An idle model takes the request at once: waiting could only add latency. Under
            # load (a batch in flight), wait for the batch to fill, at most max_delay_s after
            # its oldest request.
            first = self._queue[0].enqueued if self._queue else time.monotonic()
            delay = self.fill_wait_s
            while (self._inflight and self._queued_images < self.max_batch_size and not self._closing
                   and (remaining := first + delay - time.monotonic()) > 0):
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._wakeup.wait()
            batch = self._take()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    @property
    def fill_wait_s(self) -> float:
        """How long a batch may wait to fill under load: max_delay_s, or less with adaptive_delay."""
        if self.adaptive_delay and self.per_image_s is not None:
            return min(self.max_delay_s, self.per_image_s)
        return self.max_delay_s

    async def _execute(self, batch: list[_Item]) -> None:
        try:
            await self._call(batch)
        finally:
            self._slots.release()

    async def _call(self, batch: list[_Item]) -> None:
        images = [img for item in batch for img in item.images]
        loop = asyncio.get_running_loop()
        try:
            started = time.monotonic()
            scores = await loop.run_in_executor(self._executor, self._predict, images)
            self._note_time(time.monotonic() - started, len(images))
            self._stats.on_batch(len(images))
        except InvalidInputError as exc:
            if len(batch) > 1:
                # one bad image must not fail its neighbours: retry each request alone
                await asyncio.gather(*(self._call([item]) for item in batch))
                return
            _fail(batch, exc)
            return
        except ServiceError as exc:
            _fail(batch, exc)
            return
        except Exception as exc:  # a model crash: each caller gets it, the batcher lives on
            _fail(batch, self._crashed(exc, len(images)))
            return
        if (wrong := _wrong_rows(scores, len(images))) is not None:
            _fail(batch, wrong)
            return
        start = 0
        for i, item in enumerate(batch):
            if i and i % _ANSWER_CHUNK == 0:
                await asyncio.sleep(0)
            end = start + len(item.images)
            if not item.future.done():
                item.batch_size = len(images)
                item.future.set_result(scores[start:end])
            start = end


_ANSWER_CHUNK = 4


def _wrong_rows(scores: np.ndarray, images: int) -> InternalError | None:
    if scores.shape[0] == images:
        return None
    return InternalError(f"model returned {scores.shape[0]} rows for {images} images")


def _fail(batch: list[_Item], exc: ServiceError) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)
