"""Tiles side by side (sccodec.tile_workers): the same results in the same order as one tile at
a time, each network used by one thread at a time, and the codec's files unchanged by it."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import sccodec
from helpers import astronaut_crop
from sccodec.tile_workers import MAX_WORKERS, TileWorkers


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


def _workers(cores: int) -> tuple[TileWorkers, _Network, list[_Network]]:
    shared, made = _Network("shared"), []

    def make(threads: int) -> _Network:
        made.append(_Network(f"worker {len(made)} of {threads} threads"))
        return made[-1]

    return TileWorkers(shared, make, cores), shared, made


def _task(network: _Network, item: int) -> tuple[int, str]:
    network.use(0.006 if item % 3 == 0 else 0.001)  # so tiles finish out of order
    return item * item, network.name


@pytest.mark.parametrize("cores", [2, 3])
def test_results_come_in_order_from_the_workers_own_networks(cores) -> None:
    workers, shared, made = _workers(cores)
    progress = []
    results = workers.map(_task, list(range(12)), lambda n: progress.append((n, threading.get_ident())))
    assert [r for r, _ in results] == [i * i for i in range(12)]
    assert len(made) == cores and not shared.threads, "side by side, every tile runs on a worker's network"
    assert {name for _, name in results} == {n.name for n in made}
    assert [n for n, _ in progress] == list(range(1, 13))
    assert {t for _, t in progress} == {threading.get_ident()}, "progress is reported in the caller's thread"
    workers.map(_task, list(range(5)))
    assert len(made) == cores, "the networks are made once and kept"


@pytest.mark.parametrize(("cores", "items", "plan"), [
    (2, 12, (2, 1)), (16, 12, (MAX_WORKERS, 16 // MAX_WORKERS)), (16, 2, (2, 8)), (3, 2, (2, 1)),
    (2, 1, (1, 0)), (1, 9, (1, 0)),
])
def test_many_cores_share_out_among_a_bounded_number_of_tiles(cores, items, plan) -> None:
    """Never more tiles in flight than MAX_WORKERS (memory), nor than there are tiles; the cores
    are shared among them, so few tiles on many cores still use every core."""
    workers, _, made = _workers(cores)
    assert workers.plan(items) == plan
    workers.map(_task, list(range(items)))
    assert len(made) == (plan[0] if plan[0] > 1 else 0)
    assert all(name.endswith(f"of {plan[1]} threads") for name in (n.name for n in made))


def test_two_callers_at_once_never_share_a_network() -> None:
    """One codec used from two threads: their tiles wait for each other instead of running two
    calls on one network (``_Network.use`` fails if that happens)."""
    workers, _, made = _workers(2)
    results = {}
    callers = [threading.Thread(target=lambda k=k: results.setdefault(k, workers.map(_task, list(range(6)))))
               for k in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert [r for r, _ in results[0]] == [r for r, _ in results[1]] == [i * i for i in range(6)]
    assert len(made) == 2


@pytest.mark.parametrize(("cores", "items"), [(1, 6), (4, 1), (2, 0)])
def test_one_worker_or_one_tile_runs_on_the_shared_network_in_this_thread(cores, items) -> None:
    workers, shared, made = _workers(cores)
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
    """A 3×3 grid of tiles, coded and decoded (in 32-px windows) one at a time and two at a
    time: the same bytes at every level asked, the same pixels, the same file whether the level
    is given (each tile pixels to chunk in one task) or found by a target (all analyses first),
    and the two-thread codec really ran two worker networks."""
    pixels = astronaut_crop(80, 96)
    one, two = sccodec.Codec(device="cpu", threads=1), sccodec.Codec(device="cpu", threads=2)
    for codec in (one, two):
        codec.synthesis_window = 32
    for quality in (2, 7):
        data = one.encode(pixels, quality, tile=32)
        assert two.encode(pixels, quality, tile=32) == data
        np.testing.assert_array_equal(two.decode_array(data)[0], one.decode_array(data)[0])
    found = two.encode_with_info(pixels, target_bpp=1.0, tile=32)
    assert one.encode(pixels, target_bpp=1.0, tile=32) == found.data == two.encode(pixels, found.quality, tile=32)
    assert [len(n) for n in two._tile_workers._networks.values()] == [2] and not one._tile_workers._networks


class _CountingNetwork:
    """A custom network (the runtime's, wrapped) that counts the calls it gets."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, 0
        self.geometry = inner.geometry

    def __getattr__(self, name: str):
        method = getattr(self.inner, name)

        def counted(*args, **kwargs):
            self.calls += 1
            return method(*args, **kwargs)

        return counted


def test_a_custom_network_codes_every_tile_itself(model_file) -> None:
    """A codec given its own network never swaps it for worker networks, whatever its threads."""
    network = _CountingNetwork(model_file.network("cpu", 2))
    codec = sccodec.Codec(model_file, "cpu", threads=2, network=network)
    data = codec.encode(astronaut_crop(80, 96), 4, tile=32)
    assert network.calls == 2 * 9, "an analysis and a code per tile, all on the custom network"
    codec.synthesis_window = 32
    codec.decode_array(data)
    assert network.calls == 2 * 9 + 9 and not codec._tile_workers._networks
