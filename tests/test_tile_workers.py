"""Tiles side by side (sccodec.tile_workers): the same results in the same order as one tile at
a time, each network used by one thread at a time, and the codec's files unchanged by it."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import sccodec
from helpers import astronaut_crop
from sccodec.tile_workers import TileWorkers


class _Network:
    """Stands in for an ImageModel: records which threads use it, and fails if two do at once."""

    def __init__(self, name: str) -> None:
        self.name, self.threads, self.busy = name, set(), threading.Lock()

    def use(self, seconds: float = 0.002) -> None:
        """Long enough for another worker to try the same network."""
        assert self.busy.acquire(blocking=False), f"{self.name} used by two threads at once"
        try:
            self.threads.add(threading.get_ident())
            time.sleep(seconds)
        finally:
            self.busy.release()


def _workers(count: int) -> tuple[TileWorkers, _Network, list[_Network]]:
    shared, made = _Network("shared"), []

    def make() -> _Network:
        made.append(_Network(f"worker {len(made)}"))
        return made[-1]

    return TileWorkers(shared, make, count), shared, made


def _task(network: _Network, item: int) -> tuple[int, str]:
    network.use(0.006 if item % 3 == 0 else 0.001)  # so tiles finish out of order
    return item * item, network.name


@pytest.mark.parametrize("count", [2, 3])
def test_results_come_in_order_from_the_workers_own_networks(count) -> None:
    workers, shared, made = _workers(count)
    progress = []
    results = workers.map(_task, list(range(12)), lambda n: progress.append((n, threading.get_ident())))
    assert [r for r, _ in results] == [i * i for i in range(12)]
    assert len(made) == count and not shared.threads, "side by side, every tile runs on a worker's network"
    assert {name for _, name in results} == {n.name for n in made}
    assert [n for n, _ in progress] == list(range(1, 13))
    assert {t for _, t in progress} == {threading.get_ident()}, "progress is reported in the caller's thread"
    workers.map(_task, list(range(5)))
    assert len(made) == count, "the networks are made once and kept"


@pytest.mark.parametrize(("count", "items"), [(1, 6), (4, 1), (2, 0)])
def test_one_worker_or_one_tile_runs_on_the_shared_network_in_this_thread(count, items) -> None:
    workers, shared, made = _workers(count)
    results = workers.map(_task, list(range(items)))
    assert [r for r, _ in results] == [i * i for i in range(items)]
    assert not made
    assert shared.threads <= {threading.get_ident()}


def test_a_failing_tile_raises_in_the_caller() -> None:
    workers, _, _ = _workers(2)

    def task(network: _Network, item: int) -> int:
        network.use()
        if item == 3:
            raise ValueError("tile 3 is broken")
        return item

    with pytest.raises(ValueError, match="tile 3 is broken"):
        workers.map(task, list(range(8)))


def test_files_and_pixels_do_not_depend_on_tiles_side_by_side() -> None:
    """A 2×3 grid of tiles, coded and decoded (in 32-px windows) one at a time and two at a
    time: the same bytes at every level asked, the same pixels, and the two-thread codec really
    ran two worker networks."""
    pixels = astronaut_crop(80, 96)
    one, two = sccodec.Codec(device="cpu", threads=1), sccodec.Codec(device="cpu", threads=2)
    for codec in (one, two):
        codec.synthesis_window = 32
    for quality in (2, 7):
        data = one.encode(pixels, quality, tile=32)
        assert two.encode(pixels, quality, tile=32) == data
        np.testing.assert_array_equal(two.decode_array(data)[0], one.decode_array(data)[0])
    assert one.encode(pixels, target_bpp=1.0, tile=32) == two.encode(pixels, target_bpp=1.0, tile=32)
    assert len(two._tile_workers._networks) == 2 and not one._tile_workers._networks
