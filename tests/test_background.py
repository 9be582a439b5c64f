"""Tests for utils/background.py: Prefetcher (order, errors at their position, early close) and
WriterPool (error propagation, bounded queue, serial keys, parallelism, per-stage timing)."""
import threading
import time

import pytest

from utils.background import Prefetcher, WriterPool

TIMEOUT = 5.0  # generous bound for waits on a loaded 2-core machine


def _wait_until(condition, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


# ---------------------------------------------------------------- Prefetcher

def test_prefetcher_preserves_order():
    with Prefetcher(range(1000), depth=4) as items:
        assert list(items) == list(range(1000))
    assert not items.alive


def test_prefetcher_source_error_at_its_position():
    def source():
        yield from range(7)
        raise ValueError("decode failed at 7")

    got = []
    prefetcher = Prefetcher(source(), depth=3)
    with pytest.raises(ValueError, match="decode failed at 7"):
        for item in prefetcher:
            got.append(item)
    assert got == list(range(7))
    assert list(prefetcher) == []  # iteration has ended
    prefetcher.close()
    assert not prefetcher.alive


def test_prefetcher_early_close_stops_thread_and_closes_source():
    produced, finished = [], threading.Event()

    def endless():
        try:
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            finished.set()  # e.g. a VideoCapture released

    source = endless()  # held here, so only Prefetcher.close (not garbage collection) closes it
    with Prefetcher(source, depth=4) as items:
        assert [next(items) for _ in range(3)] == [0, 1, 2]
    assert not items.alive and finished.is_set()
    assert len(produced) <= 3 + 4 + 2  # read at most the queue depth (+ the item in hand) ahead
    with pytest.raises(StopIteration):
        next(items)


def test_prefetcher_close_without_consuming_and_wait_seconds():
    never_read = Prefetcher(iter(range(10**6)), depth=2)
    _wait_until(lambda: never_read._queue.full())
    never_read.close()
    assert not never_read.alive

    def slow():
        for i in range(5):
            time.sleep(0.01)
            yield i

    with Prefetcher(slow(), depth=2) as items:
        assert list(items) == list(range(5))
    assert items.wait_seconds >= 0.04  # the consumer waited for (nearly) all five sleeps


# ---------------------------------------------------------------- WriterPool

def test_pool_runs_every_job_and_counts_stages():
    out = []
    lock = threading.Lock()

    def save(i):
        time.sleep(0.01)
        with lock:
            out.append(i)

    def encode(i):
        time.sleep(0.03)

    with WriterPool(workers=2, max_pending=4) as pool:
        for i in range(6):
            pool.submit(save, i)  # stage defaults to the function's name
        for i in range(2):
            pool.submit(encode, i, stage="video")
    assert sorted(out) == list(range(6))
    assert pool.stage_jobs == {"save": 6, "video": 2}
    seconds = pool.stage_seconds
    assert 0.06 <= seconds["save"] < 6 * 0.01 + TIMEOUT
    assert 0.06 <= seconds["video"] < 2 * 0.03 + TIMEOUT


def test_pool_error_raised_at_next_submit_and_later_jobs_not_run():
    ran = []
    gate = threading.Event()

    def fail():
        gate.wait(TIMEOUT)
        raise OSError("disk full")

    pool = WriterPool(workers=1, max_pending=8)
    pool.submit(fail)
    for i in range(3):
        pool.submit(ran.append, i)  # queued behind the failing job
    gate.set()
    with pytest.raises(OSError, match="disk full"):
        for _ in range(1000):  # raises as soon as the worker has failed
            pool.submit(ran.append, "after")
            time.sleep(0.005)
    with pytest.raises(OSError, match="disk full"):
        pool.submit(ran.append, "again")  # every later call raises too
    with pytest.raises(OSError, match="disk full"):
        pool.close()
    assert ran == []  # nothing queued behind the error was started


def test_pool_error_raised_at_close_and_drain():
    pool = WriterPool(workers=2)
    pool.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        pool.drain()
    with pytest.raises(ZeroDivisionError):
        pool.close()
    with pytest.raises(ZeroDivisionError):
        with WriterPool(workers=1) as pool:
            pool.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        pool.submit(print)  # the error stays the answer after close
    clean = WriterPool(workers=1)
    clean.close()
    with pytest.raises(RuntimeError, match="after close"):
        clean.submit(print)


def test_pool_body_error_wins_and_cancels_queued_jobs():
    ran = []

    def wait_for_cancel():  # returns once the queue was emptied (by the cancel), or times out
        deadline = time.monotonic() + TIMEOUT
        while pool.queued and time.monotonic() < deadline:
            time.sleep(0.002)

    with pytest.raises(KeyError):
        with WriterPool(workers=1, max_pending=8) as pool:
            pool.submit(wait_for_cancel)
            for i in range(5):
                pool.submit(ran.append, i)
            raise KeyError("model failed")
    assert ran == []  # queued jobs were dropped, not run


def test_pool_submit_blocks_when_max_pending_are_queued():
    gate = threading.Event()
    returned, seen_queued = [], []
    pool = WriterPool(workers=1, max_pending=3)

    def job():
        seen_queued.append(pool.queued)

    def producer():
        pool.submit(gate.wait, TIMEOUT)  # occupies the only worker
        for i in range(10):
            pool.submit(job)
            returned.append(i)

    thread = threading.Thread(target=producer)
    thread.start()
    _wait_until(lambda: len(returned) == 3)
    time.sleep(0.1)
    assert len(returned) == 3 and pool.queued == 3  # the 4th submit is blocked
    gate.set()
    thread.join(TIMEOUT)
    pool.close()
    assert len(returned) == 10 and len(seen_queued) == 10
    assert max(seen_queued) <= 3


def test_pool_serial_key_keeps_order_while_others_run_in_parallel():
    frames, in_flight, max_in_flight = [], [0], [0]
    lock = threading.Lock()

    def write_frame(i):
        with lock:
            in_flight[0] += 1
            max_in_flight[0] = max(max_in_flight[0], in_flight[0])
        time.sleep(0.0005 * (i % 3))
        with lock:
            frames.append(i)
            in_flight[0] -= 1

    with WriterPool(workers=3, max_pending=6) as pool:
        for i in range(150):
            pool.submit(write_frame, i, serial="video")
            pool.submit(time.sleep, 0.0005)
    assert frames == list(range(150)) and max_in_flight[0] == 1
    # unkeyed jobs do run at the same time: a 2-party barrier only passes with two workers busy
    barrier = threading.Barrier(2, timeout=TIMEOUT)
    with WriterPool(workers=2) as pool:
        pool.submit(barrier.wait)
        pool.submit(barrier.wait)
