"""Background threads for a pipelined video job: decode ahead (``Prefetcher``) and write behind
(``WriterPool``) while the main thread runs the model.

Threads, not processes: the heavy calls here (OpenCV decode/encode/PNG writes, numpy lookups)
release the GIL, so on a 2-core machine they overlap with the model without copying frames
between processes. Both objects are bounded (``depth`` / ``max_pending``), so memory stays flat
however fast the producer is, and neither drops an error: it surfaces in the main thread.

Typical use (PNG writes in parallel, video frames to one encoder in frame order)::

    with Prefetcher(source, depth=4) as frames, WriterPool(workers=2) as pool:
        for name, frame in frames:
            labels = predictor.step(frame).labels
            color = colorize(labels, palette)
            pool.submit(save_png, out / "color" / f"{name}.png", color, stage="png")
            pool.submit(save_label_png, out / "label" / f"{name}.png", labels, stage="png")
            pool.submit(video.write, overlay(frame, labels, palette, 0.5, color_rgb=color),
                        stage="encode", serial="video")
    print(pool.stage_seconds)  # {"png": ..., "encode": ...}
"""
from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Any, Callable, Hashable, Iterable, Iterator

_END = object()  # the source is exhausted


class _Failure:
    """The source raised ``error``; passed through the queue so it surfaces at its position."""

    def __init__(self, error: BaseException):
        self.error = error


class Prefetcher:
    """Iterate ``iterable`` in a daemon thread, up to ``depth`` items ahead of the consumer.

    Items come out in source order. An exception raised by the source is raised by ``next()`` at
    the same position (after every item produced before it), then iteration ends. Single use:
    the thread starts at construction, so decoding overlaps with whatever the caller does next.

    ``close()`` (or leaving the ``with`` block) stops the thread: it finishes the item it is
    producing, does not start another, closes the source iterator (a generator's ``finally``
    runs, e.g. a ``VideoCapture`` is released) and exits; ``close`` waits up to ``timeout`` s.
    ``wait_seconds`` is the time the consumer spent blocked on the source (decode-bound if large).
    """

    def __init__(self, iterable: Iterable, depth: int = 4, timeout: float = 10.0):
        if depth < 1:
            raise ValueError(f"depth: expected >= 1, got {depth}")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._timeout = timeout
        self.wait_seconds = 0.0
        self._thread = threading.Thread(target=self._produce, args=(iterable,), daemon=True,
                                        name="prefetcher")
        self._thread.start()

    def _produce(self, iterable: Iterable) -> None:
        iterator = None
        try:
            iterator = iter(iterable)
            while not self._stop.is_set():
                try:
                    item = next(iterator)
                except StopIteration:
                    break
                self._queue.put(item)  # close() drains the queue, so this never blocks forever
            self._queue.put(_END)
        except BaseException as error:  # forwarded to the consumer, never lost in this thread
            self._queue.put(_Failure(error))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    @property
    def alive(self) -> bool:
        """Whether the background thread is still running."""
        return self._thread.is_alive()

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        start = time.perf_counter()
        item = self._queue.get()
        self.wait_seconds += time.perf_counter() - start
        if item is _END or isinstance(item, _Failure):
            self._done = True
            if item is _END:
                raise StopIteration
            raise item.error
        return item

    def close(self) -> None:
        """Stop the thread (see the class docstring); further ``next()`` calls stop iteration."""
        self._done = True
        self._stop.set()
        deadline = time.monotonic() + self._timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            try:  # make room so a producer blocked in put() wakes up and sees the stop flag
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.01)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Job:
    __slots__ = ("fn", "args", "stage", "serial")

    def __init__(self, fn: Callable, args: tuple, stage: str, serial: Hashable | None):
        self.fn, self.args, self.stage, self.serial = fn, args, stage, serial


class WriterPool:
    """Run ``fn(*args)`` jobs on ``workers`` daemon threads, with at most ``max_pending`` jobs
    submitted but not yet started (``submit`` blocks until there is room), so memory is bounded
    by ``max_pending + workers`` jobs' arguments.

    Ordering: jobs without a ``serial`` key run in parallel, in no set order. Jobs that share a
    ``serial`` key run one at a time in submit order — use one key per ``VideoWriter`` so its
    frames are encoded in frame order while PNG writes go in parallel.

    Errors: the first exception raised by a job stops the run. Jobs not yet started are dropped
    and no new job starts; the exception (the original object) is raised in the caller's thread
    by the next ``submit()``, ``drain()`` and ``close()`` — by every later call, so it cannot be
    lost. Threads are daemons: use ``with`` (or ``close()``) so that the last jobs complete.

    Arguments are passed by reference: do not modify an array after submitting it (submit a copy
    if the caller reuses its buffers).

    Timing: ``stage_seconds`` maps each ``stage`` label (default: the function's name) to the
    wall seconds spent inside its jobs, summed over workers; ``stage_jobs`` counts them.
    """

    def __init__(self, workers: int = 2, max_pending: int = 8):
        if workers < 1 or max_pending < 1:
            raise ValueError(f"workers and max_pending: expected >= 1, got {workers}, {max_pending}")
        self.max_pending = max_pending
        self._cond = threading.Condition()
        self._ready: deque[_Job] = deque()  # may start now
        self._waiting: dict[Hashable, deque[_Job]] = {}  # behind a queued/running job of their key
        self._busy_keys: set[Hashable] = set()  # serial keys with a job in _ready or running
        self._queued = 0  # jobs in _ready and _waiting
        self._running = 0
        self._error: BaseException | None = None
        self._closed = False
        self._seconds: dict[str, float] = {}
        self._jobs: dict[str, int] = {}
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"writer{i}")
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    @property
    def queued(self) -> int:
        """Jobs submitted but not yet started (never more than ``max_pending``)."""
        with self._cond:
            return self._queued

    @property
    def stage_seconds(self) -> dict[str, float]:
        with self._cond:
            return dict(self._seconds)

    @property
    def stage_jobs(self) -> dict[str, int]:
        with self._cond:
            return dict(self._jobs)

    def submit(self, fn: Callable, *args, stage: str | None = None,
               serial: Hashable | None = None) -> None:
        """Queue ``fn(*args)``; blocks while ``max_pending`` jobs wait. Raises the first job error,
        or RuntimeError after ``close()``."""
        job = _Job(fn, args, stage or getattr(fn, "__name__", "job"), serial)
        with self._cond:
            while self._error is None and not self._closed and self._queued >= self.max_pending:
                self._cond.wait()
            if self._error is not None:
                raise self._error
            if self._closed:
                raise RuntimeError("WriterPool.submit after close()")
            self._queued += 1
            if serial is not None and serial in self._busy_keys:
                self._waiting.setdefault(serial, deque()).append(job)
            else:
                if serial is not None:
                    self._busy_keys.add(serial)
                self._ready.append(job)
            self._cond.notify_all()

    def _next_job(self) -> _Job | None:
        with self._cond:
            while not self._ready and not self._closed:
                self._cond.wait()
            if not self._ready:
                return None
            self._queued -= 1
            self._running += 1
            self._cond.notify_all()  # room for a blocked submit()
            return self._ready.popleft()

    def _finish(self, job: _Job, seconds: float, error: BaseException | None) -> None:
        with self._cond:
            self._running -= 1
            self._seconds[job.stage] = self._seconds.get(job.stage, 0.0) + seconds
            self._jobs[job.stage] = self._jobs.get(job.stage, 0) + 1
            if error is not None and self._error is None:
                self._error = error
            if self._error is not None:  # drop everything not started
                self._drop_queued()
            elif job.serial is not None:
                behind = self._waiting.get(job.serial)
                if behind:
                    self._ready.append(behind.popleft())  # next of this key, still in order
                else:
                    self._waiting.pop(job.serial, None)
                    self._busy_keys.discard(job.serial)
            self._cond.notify_all()

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
            error = None
            start = time.perf_counter()
            try:
                job.fn(*job.args)
            except BaseException as exc:  # handed to the caller's thread by submit/close
                error = exc
            self._finish(job, time.perf_counter() - start, error)

    def _drop_queued(self) -> None:
        self._ready.clear()
        self._waiting.clear()
        self._busy_keys.clear()
        self._queued = 0

    def drain(self) -> None:
        """Wait until every submitted job has finished (e.g. before moving a finished video's
        folder), then raise the first job error if there was one. The pool stays open."""
        with self._cond:
            while (self._queued or self._running) and self._error is None:
                self._cond.wait()
            while self._running:  # after an error: let the jobs already started finish
                self._cond.wait()
            if self._error is not None:
                raise self._error

    def close(self, cancel: bool = False) -> None:
        """Wait for every submitted job (``cancel=True``: drop those not started, wait for the
        running ones), stop the threads, then raise the first job error if there was one."""
        with self._cond:
            if cancel:
                self._drop_queued()
            while self._queued and self._error is None:
                self._cond.wait()
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> "WriterPool":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # the body's exception wins; a job error at the same time is not raised over it
            self.close(cancel=True)
        except BaseException:
            pass
