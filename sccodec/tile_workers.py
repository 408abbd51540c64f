"""The tiles (and decoding windows) of a large image coded side by side, one single-threaded
network per core.

    tiles ─▶ worker 1: network (1 thread) ─▶ analysis, symbols, entropy coding of tile 1, 3, …
          ─▶ worker 2: network (1 thread) ─▶ … of tile 2, 4, …          ─▶ results in tile order

Why: one tile's convolutions spread over all cores lose some of each core to splitting the work,
and the symbol coding between two network calls is Python that holds one core while the other
waits. With one network per core and one tile per network, both stay busy (docs/performance.md,
"Tiles side by side"). Each tile's work does not depend on the others' and each network runs one
call at a time, so the results, and the files, are the same as one tile at a time.
An image of one tile, or a codec of one thread, runs on the codec's own network, in the caller's
thread.
"""
from __future__ import annotations

import queue
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TypeVar

from sccodec.model.interface import ImageModel

Item = TypeVar("Item")
Result = TypeVar("Result")


class TileWorkers:
    """Runs ``task(network, item)`` for each item, on up to ``count`` single-threaded networks at
    once (made by ``make_network`` on first use and kept), or on ``shared`` alone when there is
    one item or one worker."""

    def __init__(self, shared: ImageModel, make_network: Callable[[], ImageModel], count: int) -> None:
        self.shared, self.count = shared, max(1, count)
        self._make_network = make_network
        self._networks: list[ImageModel] = []

    def map(self, task: Callable[[ImageModel, Item], Result], items: Sequence[Item],
            done: Callable[[int], None] | None = None) -> list[Result]:
        """Each item's result, in the items' order; ``done(n)`` in the caller's thread after the
        n-th item finishes (progress). The first exception raised by a task is raised here."""
        workers = min(self.count, len(items))
        if workers < 2:
            results = []
            for item in items:
                results.append(task(self.shared, item))
                if done is not None:
                    done(len(results))
            return results
        while len(self._networks) < workers:
            self._networks.append(self._make_network())
        free: queue.SimpleQueue[ImageModel] = queue.SimpleQueue()
        for network in self._networks[:workers]:
            free.put(network)

        def run(item: Item) -> Result:
            network = free.get()
            try:
                return task(network, item)
            finally:
                free.put(network)

        with ThreadPoolExecutor(workers, thread_name_prefix="sccodec-tile") as pool:
            futures = {pool.submit(run, item): i for i, item in enumerate(items)}
            results: list = [None] * len(items)
            try:
                for finished, future in enumerate(as_completed(futures), 1):
                    results[futures[future]] = future.result()
                    if done is not None:
                        done(finished)
            except BaseException:
                for future in futures:  # tiles not started yet are not worth starting
                    future.cancel()
                raise
        return results
