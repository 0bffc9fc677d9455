"""Micro-batching for `headstart serve`: concurrent requests share one model call.

Requests put their prepared inputs on an asyncio queue; one worker takes what is waiting,
waits a short window for the requests that are still being read to join (only while such
requests exist, so a lone client never pays the window), and runs the engine once on the
stacked batch in its own thread. Under load the queue fills while the model runs, so
batches grow by themselves and throughput approaches `predict`'s batch throughput; the cap
keeps one batch's latency bounded.
"""
from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable


@dataclass
class _Job:
    payload: object
    size: int  # inputs in the payload: what the batch cap counts
    future: asyncio.Future


class Ticket:
    """A request on its way to the queue: while it is being read, the worker may wait for it."""

    def __init__(self, batcher: "MicroBatcher"):
        self._batcher, self.open = batcher, True

    def close(self) -> None:
        if self.open:
            self.open = False
            self._batcher._incoming -= 1
            self._batcher._arrived.set()


class MicroBatcher:
    """`run(payloads) -> results` (one result per payload, in order) on batches gathered for at
    most `window_s` seconds; a batch stops taking requests once it holds `max_batch` inputs
    (the engine itself runs a larger batch in chunks of `max_batch`)."""

    def __init__(self, run: Callable[[list], list], *, max_batch: int = 32, window_s: float = 0.005):
        if max_batch < 1 or window_s < 0:
            raise ValueError("max_batch must be at least 1 and window_s not negative")
        self.run, self.max_batch, self.window_s = run, max_batch, window_s
        self.batches: deque[int] = deque(maxlen=1000)  # inputs in each recent batch (bounded: servers run long)
        self.batches_run = 0
        self.inputs_run = 0
        self._incoming = 0
        self._queue: asyncio.Queue | None = None
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None

    # -- life -------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker on the running event loop (again after `stop`)."""
        running = asyncio.get_running_loop()
        if self._worker is not None and not self._worker.done() and self._worker.get_loop() is running:
            return
        if self._executor is not None:  # a worker of an event loop that has gone (a test client's)
            self._executor.shutdown(wait=False)
        self._queue, self._arrived = asyncio.Queue(), asyncio.Event()
        # one thread: the engine runs one batch at a time, and never on the event loop
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="headstart-serve-engine")
        self._worker = running.create_task(self._work(), name="headstart-serve-batcher")

    async def stop(self) -> None:
        """Answer what is queued, then stop the worker (the server's graceful shutdown)."""
        if self._worker is None:
            return
        while not self._queue.empty() and not self._worker.done():
            await asyncio.sleep(0.001)
        self._worker.cancel()
        try:
            await self._worker
        except asyncio.CancelledError:
            pass
        self._executor.shutdown(wait=True)
        self._worker = None

    # -- requests ---------------------------------------------------------------------------
    def ticket(self) -> Ticket:
        """Call when a request starts reading its inputs; `submit` (or `close`) ends it."""
        self._incoming += 1
        return Ticket(self)

    async def submit(self, payload, size: int, ticket: Ticket | None = None):
        self.start()
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(payload, size, future))
        if ticket is not None:
            ticket.close()
        self._arrived.set()
        return await future

    # -- the worker -------------------------------------------------------------------------
    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            await self._gather(jobs, loop.time() + self.window_s)
            try:
                results = await loop.run_in_executor(self._executor, self.run, [job.payload for job in jobs])
            except Exception as error:  # noqa: BLE001  (every request of the batch hears why)
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            size = sum(job.size for job in jobs)
            self.batches.append(size)
            self.batches_run, self.inputs_run = self.batches_run + 1, self.inputs_run + size
            for job, result in zip(jobs, results):
                if not job.future.done():  # a client that went away cancelled its future
                    job.future.set_result(result)

    async def _gather(self, jobs: list[_Job], deadline: float) -> None:
        loop = asyncio.get_running_loop()
        size = sum(job.size for job in jobs)
        while size < self.max_batch:
            if not self._queue.empty():
                job = self._queue.get_nowait()
                jobs.append(job)
                size += job.size
                continue
            remaining = deadline - loop.time()
            if self._incoming <= 0 or remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return
