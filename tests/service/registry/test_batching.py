"""Batcher unit tests with a fake predict function (the real model is covered elsewhere)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.errors import DeadlineError, InternalError, InvalidInputError, OverloadedError, UnavailableError
from service.registry.batching import Batcher, BatchStats


class FakeModel:
    """Scores = [len(image), 0, 0]; records batch sizes; optional delay, gate and bad images."""

    def __init__(self, delay: float = 0.0, bad: bytes | None = None, crash: bool = False):
        self.calls: list[int] = []
        self.delay = delay
        self.bad = bad
        self.crash = crash
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()

    def predict(self, images):
        self.gate.wait(10)
        with self.lock:
            self.calls.append(len(images))
        if self.delay:
            time.sleep(self.delay)
        if self.crash:
            raise RuntimeError("kaboom")
        if self.bad is not None and self.bad in images:
            raise InvalidInputError("bad image")
        return np.array([[len(x), 0.0, 0.0] for x in images], dtype=np.float32)


@pytest.fixture
def executor():
    with ThreadPoolExecutor(2) as pool:
        yield pool


def make(model: FakeModel, executor, **kw) -> Batcher:
    params = {"max_batch_size": 8, "max_delay_s": 0.02, "max_queue": 64, "concurrency": 1}
    params.update(kw)
    return Batcher(model.predict, executor, **params)


async def test_concurrent_requests_share_model_calls(executor):
    model = FakeModel()
    sizes: list[int] = []
    batcher = make(model, executor, max_batch_size=32, max_delay_s=0.05,
                   stats=BatchStats(on_batch=sizes.append))
    images = [bytes(i + 1) for i in range(32)]
    results = await asyncio.gather(*(batcher.submit([img], timeout=5) for img in images))
    # each caller gets its own row back
    assert [int(r[0, 0]) for r in results] == [len(i) for i in images]
    assert sum(model.calls) == 32
    assert len(model.calls) <= 4, model.calls  # coalesced, not 32 calls
    assert sizes == model.calls
    await batcher.close()


async def test_batch_never_exceeds_max_size(executor):
    model = FakeModel()
    batcher = make(model, executor, max_batch_size=4, max_delay_s=0.05)
    results = await asyncio.gather(*(batcher.submit([b"x" * (i + 1)], timeout=5) for i in range(10)))
    assert len(results) == 10
    assert max(model.calls) <= 4 and sum(model.calls) == 10
    # a request larger than a batch is split into chunks and reassembled in order
    big = [bytes(i + 1) for i in range(10)]
    out = await batcher.submit(big, timeout=5)
    assert out[:, 0].tolist() == [float(i + 1) for i in range(10)]
    await batcher.close()


async def test_idle_model_takes_a_lone_request_at_once(executor):
    model = FakeModel()
    batcher = make(model, executor, max_batch_size=32, max_delay_s=2.0)
    started = time.monotonic()
    await batcher.submit([b"abc"], timeout=5)
    assert time.monotonic() - started < 1.0  # far below the 2 s delay: nothing to wait for
    assert model.calls == [1]
    await batcher.close()


async def test_under_load_a_batch_waits_at_most_the_delay(executor):
    model = FakeModel(delay=0.3)
    batcher = make(model, executor, max_batch_size=32, max_delay_s=0.1, concurrency=2)
    first = asyncio.ensure_future(batcher.submit([b"a"], timeout=5))  # busy from here on
    await asyncio.sleep(0.05)
    started = time.monotonic()
    second = asyncio.ensure_future(batcher.submit([b"bb"], timeout=5))
    await asyncio.sleep(0.03)
    third = asyncio.ensure_future(batcher.submit([b"ccc"], timeout=5))
    await asyncio.gather(second, third)
    elapsed = time.monotonic() - started
    # the two later requests shared one call, closed by the delay (0.1 s) plus the call (0.3 s)
    assert model.calls == [1, 2]
    assert elapsed < 1.5
    await first
    await batcher.close()


async def test_full_queue_rejects_at_once(executor):
    model = FakeModel()
    model.gate.clear()  # the model hangs: requests pile up
    batcher = make(model, executor, max_batch_size=2, max_queue=4, max_delay_s=0.0)
    first = asyncio.ensure_future(batcher.submit([b"a", b"b"], timeout=5))
    await asyncio.sleep(0.05)  # the first batch is now inside the model
    queued = [asyncio.ensure_future(batcher.submit([b"c", b"d"], timeout=5)) for _ in range(2)]
    await asyncio.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(OverloadedError) as err:
        await batcher.submit([b"e"], timeout=5)
    assert time.monotonic() - started < 0.5
    assert err.value.retry_after is not None
    model.gate.set()
    await asyncio.gather(first, *queued)
    await batcher.close()


async def test_admitted_requests_hold_their_place_until_released(executor):
    batcher = make(FakeModel(), executor, max_queue=2)
    first, second = batcher.admit(), batcher.admit()
    with pytest.raises(OverloadedError, match="2 requests in progress"):
        batcher.admit()
    first()
    first()  # releasing twice frees one place only
    third = batcher.admit()
    with pytest.raises(OverloadedError):
        batcher.admit()
    second()
    third()
    batcher.admit()()
    await batcher.close()
    with pytest.raises(UnavailableError):  # an unloading version lets nobody in
        batcher.admit()


async def test_deadline_gives_deadline_error(executor):
    model = FakeModel(delay=0.5)
    batcher = make(model, executor)
    with pytest.raises(DeadlineError):
        await batcher.submit([b"slow"], timeout=0.1)
    await batcher.close()


async def test_bad_image_fails_only_its_request(executor):
    model = FakeModel(bad=b"BAD")
    batcher = make(model, executor, max_delay_s=0.05)
    good1 = batcher.submit([b"good"], timeout=5)
    bad = batcher.submit([b"BAD"], timeout=5)
    good2 = batcher.submit([b"fine!"], timeout=5)
    results = await asyncio.gather(good1, bad, good2, return_exceptions=True)
    assert isinstance(results[1], InvalidInputError)
    assert results[0][0, 0] == 4 and results[2][0, 0] == 5
    await batcher.close()


async def test_crashing_model_fails_each_caller_and_batcher_survives(executor):
    model = FakeModel(crash=True)
    batcher = make(model, executor, max_delay_s=0.05)
    results = await asyncio.gather(*(batcher.submit([b"x"], timeout=5) for _ in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, InternalError) and "kaboom" in str(r) for r in results)
    model.crash = False
    assert (await batcher.submit([b"ok"], timeout=5))[0, 0] == 2
    await batcher.close()


async def test_close_finishes_in_flight_work_then_refuses(executor):
    model = FakeModel(delay=0.2)
    batcher = make(model, executor, max_delay_s=0.0)
    pending = [asyncio.ensure_future(batcher.submit([b"x" * (i + 1)], timeout=5)) for i in range(5)]
    await asyncio.sleep(0.01)
    await batcher.close()
    assert all(p.done() and not p.exception() for p in pending)
    with pytest.raises(UnavailableError):
        await batcher.submit([b"late"], timeout=5)


async def test_model_runs_off_the_event_loop(executor):
    model = FakeModel(delay=0.3)
    batcher = make(model, executor, max_delay_s=0.0)
    task = asyncio.ensure_future(batcher.submit([b"x"], timeout=5))
    ticks = 0
    while not task.done():  # the loop keeps turning while the model "computes"
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks >= 10
    await batcher.close()


class RecordingModel(FakeModel):
    """Also remembers every image that reached the model."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[bytes] = []

    def predict(self, images):
        out = super().predict(images)
        self.seen.extend(images)
        return out


async def test_expired_and_abandoned_requests_never_reach_the_model(executor):
    model = RecordingModel()
    model.gate.clear()  # the model is busy with the first request
    batcher = make(model, executor, max_delay_s=0.0)
    first = asyncio.ensure_future(batcher.submit([b"first"], timeout=5))
    await asyncio.sleep(0.05)
    expired = asyncio.ensure_future(batcher.submit([b"expired"], timeout=0.05))
    abandoned = asyncio.ensure_future(batcher.submit([b"abandoned"], timeout=5))
    kept = asyncio.ensure_future(batcher.submit([b"kept"], timeout=5))
    await asyncio.sleep(0.1)
    abandoned.cancel()  # e.g. the client closed the connection
    with pytest.raises(DeadlineError):
        await expired
    model.gate.set()
    await asyncio.gather(first, kept)
    assert model.seen == [b"first", b"kept"]
    await batcher.close()


async def test_model_calls_stay_under_the_pixel_budget(executor):
    model = RecordingModel()
    batcher = make(model, executor, max_batch_size=8, max_delay_s=0.05, max_batch_pixels=100)
    images = [bytes([i]) for i in range(6)]
    out = await batcher.submit(images, timeout=5, pixels=[40] * 6)
    assert out.shape == (6, 3)
    assert model.calls == [2, 2, 2]  # 40 + 40 fits in 100, a third does not
    out = await batcher.submit([b"huge"], timeout=5, pixels=[500])  # one image over it runs alone
    assert out.shape == (1, 3) and model.calls[-1] == 1
    await batcher.close()


async def test_adaptive_delay_waits_at_most_one_measured_image(executor):
    model = FakeModel(delay=0.002)
    batcher = make(model, executor, max_delay_s=5.0, adaptive_delay=True)
    fixed = make(FakeModel(delay=0.002), executor, max_delay_s=5.0)
    assert batcher.fill_wait_s == 5.0  # nothing measured yet
    await batcher.submit([b"x"] * 4, timeout=5)
    await fixed.submit([b"x"] * 4, timeout=5)
    # the measured time of one image (a 2 ms call for 4 images), not the 5 s ceiling
    assert batcher.per_image_s is not None and 0 < batcher.fill_wait_s == batcher.per_image_s < 5.0
    assert fixed.fill_wait_s == 5.0
    await batcher.close()
    await fixed.close()


async def test_a_lone_image_on_an_idle_model_is_prepared_and_scored_in_one_thread(executor):
    model = FakeModel()
    sizes: list[int] = []
    batcher = make(model, executor, stats=BatchStats(on_batch=sizes.append))
    threads: list[str] = []

    def prepare() -> bytes:
        threads.append(threading.current_thread().name)
        return b"abc"

    out = await batcher.submit_alone(prepare)
    assert out is not None and out.tolist() == [[3.0, 0.0, 0.0]]
    assert threads and threads[0] != threading.current_thread().name  # off the event loop
    assert model.calls == [1] and sizes == [1] and batcher.idle
    assert batcher.per_image_s is not None  # the model's time, which sets the fill wait
    await batcher.close()


async def test_a_busy_model_sends_a_lone_image_through_the_queue(executor):
    model = FakeModel()
    model.gate.clear()
    batcher = make(model, executor, max_delay_s=0.0)
    first = asyncio.ensure_future(batcher.submit([b"first"], timeout=5))
    await asyncio.sleep(0.05)
    prepared: list[bool] = []
    assert await batcher.submit_alone(lambda: prepared.append(True) or b"x") is None
    assert not prepared  # nothing was decoded: the caller submits it as usual
    model.gate.set()
    await first
    await batcher.close()


async def test_requests_arriving_during_a_lone_call_wait_for_it_and_batch_together(executor):
    model = FakeModel()
    model.gate.clear()
    batcher = make(model, executor, concurrency=1, max_delay_s=0.02)
    alone = asyncio.ensure_future(batcher.submit_alone(lambda: b"a"))
    await asyncio.sleep(0.05)
    assert not batcher.idle  # the lone call counts as a batch in flight
    later = [asyncio.ensure_future(batcher.submit([b"x" * (i + 1)], timeout=5)) for i in range(3)]
    await asyncio.sleep(0.05)
    assert model.calls == []  # the only slot is taken: they queue
    model.gate.set()
    await asyncio.gather(alone, *later)
    assert model.calls == [1, 3]
    await batcher.close()


async def test_a_cancelled_lone_caller_keeps_the_slot_until_the_model_is_done(executor):
    model = FakeModel()
    model.gate.clear()
    batcher = make(model, executor, concurrency=1)
    alone = asyncio.ensure_future(batcher.submit_alone(lambda: b"a"))
    await asyncio.sleep(0.05)
    alone.cancel()  # the client went away; the thread still runs the model
    await asyncio.sleep(0.01)
    assert not batcher.idle and batcher._slots.locked()
    closing = asyncio.ensure_future(batcher.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # close() waits for the lone call as for a batch
    model.gate.set()
    await closing
    assert batcher.idle and not batcher._slots.locked()


async def test_lone_calls_fail_as_batches_do(executor):
    model = FakeModel(crash=True)
    batcher = make(model, executor)
    with pytest.raises(InternalError, match="kaboom"):
        await batcher.submit_alone(lambda: b"a")

    def bad() -> bytes:
        raise InvalidInputError("image 1: not a readable image")

    with pytest.raises(InvalidInputError, match="not a readable"):  # a client's error stays one
        await batcher.submit_alone(bad)
    model.crash = False
    assert batcher.idle and (await batcher.submit([b"ok"], timeout=5))[0, 0] == 2
    await batcher.close()


async def test_callers_who_leave_free_their_room_in_the_queue_at_once(executor):
    model = RecordingModel()
    model.gate.clear()  # the model is busy: everything else queues
    batcher = make(model, executor, max_delay_s=0.0, max_queue=4)
    first = asyncio.ensure_future(batcher.submit([b"first"], timeout=5))
    await asyncio.sleep(0.05)
    waiting = [asyncio.ensure_future(batcher.submit([b"w%d" % i], timeout=5)) for i in range(4)]
    await asyncio.sleep(0.01)
    with pytest.raises(OverloadedError):
        batcher.check_room(1)  # full
    for task in waiting:
        task.cancel()  # e.g. a crowd of clients closed their connections
    await asyncio.gather(*waiting, return_exceptions=True)
    # room again while the model is still busy: not only once the worker next takes a batch
    assert batcher.queued_images == 0
    batcher.check_room(4)
    late = asyncio.ensure_future(batcher.submit([b"late"], timeout=5))
    model.gate.set()
    await asyncio.gather(first, late)
    assert model.seen == [b"first", b"late"]  # the ones who left never reached the model
    await batcher.close()
