"""The tiles (and decoding windows) of a large image coded side by side, each on a network of
its own.

    tiles ─▶ worker 1: network (cores / workers threads) ─▶ analysis, symbols, chunk of tile 1, 3, …
          ─▶ worker 2: network ─▶ … of tile 2, 4, …                    ─▶ results in tile order

Why: one tile's convolutions spread over all cores lose some of each core to splitting the work,
and the symbol coding between two network calls is Python that holds one core while the others
wait. With a network per worker and a tile per network, the cores stay busy (docs/performance.md,
"Tiles side by side": measured with two workers of one thread on two cores). At most
``MAX_WORKERS`` tiles run at once: each holds its activations (a few hundred MB for a 1024-px
tile), so memory stays bounded on machines with many cores, whose threads are shared among the
workers instead.

Each tile's work does not depend on the others', so the results are those of one tile at a time
on networks of the same threads; an image of one tile, or a codec of one thread, runs on the
codec's own network in the caller's thread.
"""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from sccodec.model.interface import ImageModel

Item = TypeVar("Item")
Result = TypeVar("Result")
MAX_WORKERS = 4  # tiles in flight at once, whatever the cores: bounds the memory


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class TileWorkers:
    """Runs ``task(network, item)`` for each item, up to ``MAX_WORKERS`` at once on networks made
    by ``make_network(threads)`` (``cores`` shared among them; made on first use and kept), or on
    ``shared`` alone when there is one item or one core. One ``map`` at a time runs side by side;
    a second caller's waits for it."""

    def __init__(self, shared: ImageModel, make_network: Callable[[int], ImageModel], cores: int) -> None:
        self.shared, self.cores = shared, max(1, cores)
        self._make_network = make_network
        self._networks: dict[int, list[ImageModel]] = {}  # by threads per network
        self._lock = threading.Lock()

    def plan(self, items: int) -> tuple[int, int]:
        """(workers, threads per worker's network) for ``items`` tiles; (1, 0): the shared network."""
        workers = min(self.cores, items, MAX_WORKERS)
        return (workers, self.cores // workers) if workers > 1 else (1, 0)

    def map(self, task: Callable[[ImageModel, Item], Result], items: Sequence[Item],
            done: Callable[[int], None] | None = None) -> list[Result]:
        """Each item's result, in the items' order; ``done(n)`` in the caller's thread after the
        n-th item finishes (progress). The first exception raised by a task is raised here."""
        workers, threads = self.plan(len(items))
        if workers == 1:
            results = []
            for item in items:
                results.append(task(self.shared, item))
                if done is not None:
                    done(len(results))
            return results
        with self._lock:
            networks = self._networks.setdefault(threads, [])
            while len(networks) < workers:
                networks.append(self._make_network(threads))
            return _side_by_side(task, items, networks[:workers], done)


def _side_by_side(task: Callable[[ImageModel, Item], Result], items: Sequence[Item], networks: list[ImageModel],
                  done: Callable[[int], None] | None) -> list[Result]:
    free: queue.SimpleQueue[ImageModel] = queue.SimpleQueue()
    for network in networks:
        free.put(network)

    def run(item: Item) -> Result:
        network = free.get()  # each network runs one tile at a time
        try:
            return task(network, item)
        finally:
            free.put(network)

    with ThreadPoolExecutor(len(networks), thread_name_prefix="sccodec-tile") as pool:
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
