"""Server-side dynamic batching: concurrent requests share one model call.

Items queue up; a single worker takes up to max_batch of them, waiting at most max_wait for
more once the first arrives, and runs the model on the given executor (one thread) so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any


class DynamicBatcher:
    def __init__(
        self,
        run_batch: Callable[[list[Any]], Sequence[Any]],
        executor: Executor,
        max_batch: int = 32,
        max_wait: float = 0.005,
        on_batch: Callable[[int], None] = lambda size: None,
    ):
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.on_batch = on_batch
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future]] | None = None
        self._worker: asyncio.Task | None = None
        self.executor = executor

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._serve())

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    async def submit(self, items: list[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        for item, future in zip(items, futures):
            self._queue.put_nowait((item, future))
        return list(await asyncio.gather(*futures))

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            live = [(item, future) for item, future in batch if not future.done()]  # skip cancelled callers
            if not live:
                continue
            self.on_batch(len(live))
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, [item for item, _ in live])
            except Exception as exc:  # a model failure fails this batch's callers, not the server
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(live, results):
                if not future.done():
                    future.set_result(result)
