"""The aligned NumPy memory handler (deepgrad/_native/memory.c and memory.py): installed with the
native kernels in the main thread, every new array there starts on a 64-byte boundary, NumPy's
allocation contract holds (zeroed calloc, realloc keeping the data, frees from anywhere), and
results do not change."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import _native
from deepgrad._native import memory

needs_kernels = pytest.mark.skipif(_native.lib() is None, reason=_native.status())


def _handler_name() -> str:
    return np._core.multiarray.get_handler_name()


def _fresh_process(env_update: dict, code: str) -> str:
    env = dict(os.environ, **env_update)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


@pytest.fixture(autouse=True)
def _installed():
    dg.nn.Linear(2, 2)  # building a module loads the kernels and installs the handler
    if os.environ.get("DEEPGRAD_ALIGNED_MEMORY", "1").strip() == "0":
        pytest.skip("DEEPGRAD_ALIGNED_MEMORY=0")


@needs_kernels
def test_building_a_module_installs_the_handler_and_parameters_are_aligned():
    assert _handler_name() == memory.NAME
    assert "aligned memory: on" in _native.status()
    m = dg.nn.Sequential(dg.nn.Linear(784, 512), dg.nn.Linear(512, 10), dg.nn.Conv2d(3, 8, 5))
    for p in m.parameters():
        assert p.data.ctypes.data % memory.ALIGN == 0


@needs_kernels
@pytest.mark.parametrize("n", [0, 1, 2, 15, 16, 17, 63, 64, 255, 256, 1023, 1024, 1025,
                               4097, 1 << 18])
def test_arrays_of_every_size_start_on_a_cache_line(n):
    for dt in (np.uint8, np.float32, np.float64, np.complex128):
        for make in (np.empty, np.zeros, np.ones):
            a = make(n, dt)
            assert a.ctypes.data % memory.ALIGN == 0, (make.__name__, n, dt)
        z = np.zeros(n, dt)
        assert not z.any()


@needs_kernels
def test_small_blocks_are_reused_without_overlap():
    """The small-size cache hands a freed block out again; live arrays must never share one."""
    rng = np.random.default_rng(0)
    live: dict[int, np.ndarray] = {}
    for step in range(4000):
        if live and rng.random() < 0.45:
            key = int(rng.choice(list(live)))
            a = live.pop(key)
            assert (a == key % 251).all()  # nobody else wrote into it
            del a
        else:
            n = int(rng.integers(0, 1100))
            a = np.empty(n, np.uint8)
            assert a.ctypes.data % memory.ALIGN == 0
            a[...] = step % 251
            live[step] = a
    for key, a in live.items():
        assert (a == key % 251).all()


@needs_kernels
@pytest.mark.parametrize("sizes", [(10, 5000, 3, 70000, 1), (1000, 1030, 1020), (0, 1, 0, 300)])
def test_resize_keeps_the_data_and_the_alignment(sizes):
    a = np.arange(sizes[0], dtype=np.int32)
    expected = np.arange(sizes[0], dtype=np.int32)
    for n in sizes[1:]:
        a.resize(n, refcheck=False)  # NumPy's realloc
        assert a.ctypes.data % memory.ALIGN == 0
        keep = min(n, expected.size)
        assert np.array_equal(a[:keep], expected[:keep])
        assert not a[keep:].any()  # resize zero-fills what it adds
        expected = np.concatenate([expected[:keep], np.zeros(n - keep, np.int32)])


@needs_kernels
def test_growing_arrays_from_iterators_and_text():
    """np.fromiter and np.fromstring grow their result by realloc as they read."""
    n = 100_003
    a = np.fromiter((i * 3 for i in range(n)), dtype=np.int64)
    assert a.ctypes.data % memory.ALIGN == 0
    assert np.array_equal(a, np.arange(n, dtype=np.int64) * 3)
    b = np.fromstring(" ".join(map(str, range(5000))), dtype=np.float64, sep=" ")
    assert np.array_equal(b, np.arange(5000.0))


@needs_kernels
def test_arrays_cross_threads_in_both_directions():
    """Another thread keeps NumPy's default handler; arrays made by either handler may be
    freed in the other thread."""
    made_here = [np.full(3000, 7.0) for _ in range(20)]
    seen = {}

    def worker():
        seen["name"] = _handler_name()
        seen["arrays"] = [np.full(n, 2.0) for n in (5, 500, 5000)]
        made_here.clear()  # frees the main thread's aligned arrays here

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["name"] == "default_allocator"
    assert [float(a.sum()) for a in seen.pop("arrays")] == [10.0, 1000.0, 10000.0]
    gc.collect()


def test_install_leaves_someone_elses_handler_alone(monkeypatch):
    cdll = _native._state["cdll"]
    if cdll is None:
        pytest.skip(_native.status())
    monkeypatch.setattr(memory, "_current_name", lambda: "their_allocator")
    reason = memory._state["reason"]
    try:
        assert memory.install(cdll) is False
        assert "their_allocator" in memory.status()
    finally:
        memory._state["reason"] = reason


_RUN = ("import numpy as np, deepgrad as dg; from deepgrad import _native; "
        "dg.manual_seed(0); m = dg.nn.Sequential(dg.nn.Linear(300, 200), dg.nn.ReLU(), "
        "dg.nn.Linear(200, 10)); opt = dg.optim.SGD(m.parameters(), lr=0.1, momentum=0.9); "
        "x = dg.randn(64, 300); y = dg.from_numpy(np.arange(64) % 10)\n"
        "for _ in range(3):\n"
        "    opt.zero_grad(); dg.nn.functional.cross_entropy(m(x), y).backward(); opt.step()\n"
        "print(m[0].weight.data.ctypes.data % 64)\n"
        "print(_native.status())\n"
        "print(repr([float(p.data.astype(np.float64).sum()) for p in m.parameters()]))")


@needs_kernels
def test_aligned_memory_changes_no_result_and_can_be_turned_off():
    on = _fresh_process({}, _RUN).splitlines()
    off = _fresh_process({"DEEPGRAD_ALIGNED_MEMORY": "0"}, _RUN).splitlines()
    assert on[0] == "0"  # the weights start on a cache line
    assert "aligned memory: on" in on[1]
    assert "aligned memory: off (DEEPGRAD_ALIGNED_MEMORY=0)" in off[1]
    assert on[2] == off[2]  # the weights after three steps, to the last bit


def test_no_handler_without_the_kernels():
    out = _fresh_process({"DEEPGRAD_NATIVE": "0"},
                         "import numpy as np, deepgrad as dg; dg.nn.Linear(3, 3); "
                         "print(np._core.multiarray.get_handler_name())")
    assert out == "default_allocator"


@needs_kernels
def test_kernels_loaded_in_another_thread_install_on_the_next_module_in_the_main_thread():
    code = ("import threading, numpy as np, deepgrad as dg; from deepgrad import _native\n"
            "t = threading.Thread(target=_native.lib); t.start(); t.join()\n"
            "print(np._core.multiarray.get_handler_name()); print(_native.status())\n"
            "dg.nn.Linear(3, 3); print(np._core.multiarray.get_handler_name())")
    first, status, after = _fresh_process({}, code).splitlines()
    assert first == "default_allocator"
    assert "not installed yet" in status
    assert after == memory.NAME
