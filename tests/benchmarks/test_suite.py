"""The benchmark suite (benchmarks/): the runner end to end, its report, and every workload's check.

The timings themselves are not tested (they depend on the machine); what is tested is that the
instrument works: a quick run writes a complete record, the README table is replaced only
between its markers, the gradient check can fail, and each training workload computes the same
gradients in deepgrad as in PyTorch from the same data and weights.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deepgrad as dg
from helpers import requires_torch, torch

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import workloads  # noqa: E402  (benchmarks/workloads, found through the path above)


def _load_run():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run = _load_run()

TRAINING = [n for n in workloads.NAMES if getattr(workloads.load([n])[0], "TRAINING", False)]
# every workload with a target that is timed step by step (startup and roofline measure otherwise)
CHECKED = [n for n in workloads.NAMES
           if hasattr(workloads.load([n])[0], "TARGET")]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]]
                                                        if env.get("PYTHONPATH") else []))
    return env


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run of the cheapest workloads (and the roofline) in a fresh process."""
    out = tmp_path_factory.mktemp("bench") / "record.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--quick", "--threads", "1",
         "--workloads", "xor_tiny,op_overhead,roofline", "--out", str(out)],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    return proc, out


def test_quick_run_succeeds_and_prints_the_table(quick_run):
    proc, _ = quick_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for text in ("workload", "unit", "ratio", "target", "xor_tiny", "op_overhead",
                 "Geometric mean of the training ratios", "Roofline: NumPy float32 GEMM peak"):
        assert text in proc.stdout


def test_quick_run_record_has_every_field(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    assert record["schema"] == run.SCHEMA
    assert record["quick"] is True
    for key in ("created_utc", "elapsed_seconds", "machine", "threads", "versions", "git",
                "roofline", "summary", "results"):
        assert key in record, key
    assert record["threads"]["requested"] == 1
    assert record["threads"]["env"]["OPENBLAS_NUM_THREADS"] == "1"
    assert isinstance(record["native"]["mkl_gemm"], bool)
    assert record["native"]["mkl_status"].startswith("MKL GEMM: ")
    assert record["machine"]["logical_cpus"] >= 1
    assert record["roofline"]["peak_gflops"] > 0
    rows = {r["workload"]: r for r in record["results"]}
    assert set(rows) == {"xor_tiny", "op_overhead"}
    xor = rows["xor_tiny"]
    assert xor["unit"] == "us" and xor["target"] == 0.5 and xor["training"] is True
    assert xor["flops_per_step"] > 0
    assert xor["deepgrad"]["median_us"] > 0
    assert xor["deepgrad"]["min_us"] <= xor["deepgrad"]["median_us"] <= xor["deepgrad"]["max_us"]
    assert len(xor["deepgrad"]["samples_us"]) == xor["repeats"]
    assert xor["gflops"]["deepgrad"] > 0
    assert 0 < xor["fraction_of_peak"]["deepgrad"]
    assert rows["op_overhead"]["target"] is None
    if torch is not None:
        assert xor["check"] == "ok" and rows["op_overhead"]["check"] == "ok"
        assert xor["ratio"] == pytest.approx(
            xor["deepgrad"]["median_us"] / xor["torch"]["median_us"])
        assert record["summary"]["training_workloads"] == ["xor_tiny"]
        assert record["summary"]["training_geomean"] == pytest.approx(xor["ratio"])
    else:
        assert xor["check"] == "skipped" and xor["torch"] is None


def test_readme_table_is_replaced_only_between_the_markers(quick_run, tmp_path):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr
    readme = tmp_path / "README.md"
    before, after = "# Title\n\nintro text\n\n", "\n\n## Layout\n\nmore text\n"
    readme.write_text(before + f"{run.BEGIN}\nold table\n{run.END}" + after)
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--from", str(out), "--readme",
         "--readme-path", str(readme)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    assert text.startswith(before + run.BEGIN) and text.endswith(run.END + after)
    inner = text[text.index(run.BEGIN):text.index(run.END)]
    assert "old table" not in inner
    assert "Machine:" in inner and "| xor_tiny | us |" in inner
    assert "Geometric mean of the training ratios" in inner
    # a second update replaces the first instead of adding to it
    run.update_readme(readme, json.loads(out.read_text()))
    assert readme.read_text() == text


def test_machine_line_says_which_blas_did_deepgrads_gemms():
    base = {"machine": {}, "threads": {"requested": 2}, "versions": {}, "results": []}
    line = run.machine_line({**base, "native": {"on": True, "mkl_gemm": True, "mkl_status":
                                                "MKL GEMM: on: Intel(R) oneAPI Math Kernel "
                                                "Library Version 2026.2-Product Build 1"}})
    assert "native kernels on, its GEMMs through MKL 2026.2-Product;" in line
    line = run.machine_line({**base, "native": {"on": True, "mkl_gemm": False,
                                                "mkl_status": "MKL GEMM: off"}})
    assert "its GEMMs through NumPy (MKL not in use);" in line
    # records from before MKL: their GEMMs went through NumPy
    assert "its GEMMs through NumPy;" in run.machine_line({**base, "native": {"on": False}})


def test_readme_without_markers_is_an_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    with pytest.raises(ValueError, match="bench:begin"):
        run.update_readme(readme, {"results": []})
    assert readme.read_text() == "# no markers here\n"


def test_grad_check_reports_a_wrong_gradient():
    a = dg.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    b = dg.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    (a * 2).sum().backward()
    (b * 2).sum().backward()
    grads = run.snapshot  # what the runner compares: copies taken after the step
    assert run.compare_grads(grads([a]), grads([b])) == "ok"
    b.grad = None
    (b * 2.01).sum().backward()
    assert run.compare_grads(grads([a]), grads([b])).startswith("leaf 0: max abs grad difference")
    b.grad = None
    assert "grad is None" in run.compare_grads(grads([a]), grads([b]))
    assert run.compare_values(grads([a], "values"), grads([a * 1.01], "values")).startswith(
        "leaf 0: max abs value difference")


def test_geometric_mean_of_training_ratios():
    results = [{"workload": "a", "training": True, "ratio": 0.5},
               {"workload": "b", "training": True, "ratio": 2.0},
               {"workload": "c", "training": True, "ratio": 0.25},
               {"workload": "d", "training": False, "ratio": 100.0},
               {"workload": "e", "training": True, "ratio": None}]
    summary = run.training_summary(results)
    assert summary["training_geomean"] == pytest.approx(math.exp(math.log(0.25) / 3))
    assert summary["training_workloads"] == ["a", "b", "c"]
    assert summary["training_missing"] == ["e"]
    assert summary["met"] is (summary["training_geomean"] <= run.GEOMEAN_TARGET)


def test_every_workload_follows_the_protocol():
    for w in workloads.load():
        assert isinstance(w.NAME, str) and isinstance(w.DESCRIPTION, str)
        if getattr(w, "PRODUCES", None):
            assert callable(w.measure)
            continue
        assert callable(w.make_inputs) and callable(w.build)
        assert getattr(w, "UNIT", "us") in run.TIME_UNITS
    # the targets, by workload
    targets = {w.NAME: getattr(w, "TARGET", None) for w in workloads.load()}
    assert targets["xor_tiny"] == 0.5 and targets["lenet_modern_256"] == 1.0
    assert targets["conv_layer"] == 1.2 and targets["lenet5_epoch"] == 0.8
    assert set(TRAINING) == {"xor_tiny", "mlp_mnist", "lenet5", "lenet_modern_64",
                             "lenet_modern_256", "char_lstm", "char_gru", "char_rnn"}


@requires_torch
@pytest.mark.parametrize("name", CHECKED)
def test_workload_matches_torch_after_one_step(name):
    """Same data and weights: after one step deepgrad's gradients (or outputs) equal torch's."""
    w = workloads.load([name])[0]
    inputs = w.make_inputs(np.random.default_rng(0), True)
    build = getattr(w, "build_check", w.build)
    checked = {}
    for lib in (dg, torch):
        step, leaves = build(lib, inputs)
        step()
        checked[lib.__name__] = run.snapshot(leaves, getattr(w, "CHECK", "grad"))
    compare = run.compare_values if getattr(w, "CHECK", "grad") == "values" else run.compare_grads
    assert compare(checked["deepgrad"], checked["torch"]) == "ok"


@requires_torch
def test_same_init_gives_both_libraries_the_same_weights():
    from workloads import _char, _train

    models = {}
    for lib in (dg, torch):
        models[lib.__name__] = _train.lenet5(lib, modern=False)
        _train.same_init(lib, models[lib.__name__])
    a = models["deepgrad"].state_dict()
    b = models["torch"].state_dict()
    assert list(a) == list(b)
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    # a recurrent layer's weights use its hidden size for the scale, as PyTorch's init does
    lstm = dg.nn.LSTM(_char.EMBED, _char.HIDDEN)
    _train.same_init(dg, lstm)
    bound = 1 / math.sqrt(_char.HIDDEN)
    assert 0.9 * bound < np.abs(lstm.weight_ih_l0.detach().numpy()).max() <= bound


@requires_torch
def test_epoch_workload_runs_one_epoch_in_both_libraries():
    w = workloads.load(["lenet5_epoch"])[0]
    full = w.make_inputs(np.random.default_rng(0), True)
    inputs = {"x": full["x"][:5 * w.BATCH - 7], "y": full["y"][:5 * w.BATCH - 7]}
    for lib in (dg, torch):
        step, params = w.build(lib, inputs)
        before = [p.detach().numpy().copy() for p in params]
        step()
        after = [p.detach().numpy() for p in params]
        assert all(np.isfinite(p).all() for p in after)
        assert all(not np.array_equal(b, a) for b, a in zip(before, after)), lib.__name__
    assert w.flops(inputs) == pytest.approx(w.flops(full) * (5 * w.BATCH - 7) / full["x"].shape[0])


def test_quiesce_waits_for_a_busy_thread_and_not_otherwise():
    """Each timed repetition starts once no thread of the process burns CPU (another library's
    BLAS workers spin for about 0.1 s after a call and would slow the repetition after)."""
    import threading
    import time

    import harness

    assert harness.quiesce() < 0.5  # an idle process: the first window of sleep suffices
    stop = threading.Event()

    def spin():  # a worker spinning for 0.3 s, as a BLAS thread does after its call
        end = time.perf_counter() + 0.3
        while not stop.is_set() and time.perf_counter() < end:
            pass

    worker = threading.Thread(target=spin)
    worker.start()
    try:
        assert harness.quiesce(max_seconds=5.0) >= 0.2
    finally:
        stop.set()
        worker.join()


def _step_slow_on_calls(slow_calls: set[int], slow: float, fast: float = 0.0005):
    """A step that sleeps ``slow`` seconds on the given calls (counted from 0), else ``fast``."""
    import time

    calls = []

    def step():
        time.sleep(slow if len(calls) in slow_calls else fast)
        calls.append(None)

    return step, calls


def test_calibrate_does_not_take_one_slow_call_for_a_slow_step():
    """One call that happens to last the target (a collection, a stall) is timed again: a fast
    step must get many calls per repetition, or every repetition times one call and the
    threads' wake-up after quiesce with it. A step that is slow every time gets one call."""
    import harness

    step, _ = _step_slow_on_calls({0}, slow=0.05)
    assert harness.calibrate(step, target_seconds=0.02) >= 20
    step, _ = _step_slow_on_calls(set(range(100)), slow=0.03)
    assert harness.calibrate(step, target_seconds=0.02) == 1


def test_runner_takes_one_call_per_repetition_only_for_a_step_slow_twice(monkeypatch):
    """The first step, run for the check, pays one-time costs; the runner decides on one call
    per repetition only if the next call is as slow."""
    import types

    import harness

    seen = {}

    def fake_measure(steps, reps, target, known):
        seen.update(known)
        return {}

    monkeypatch.setattr(harness, "measure_alternating", fake_measure)
    for slow_calls, expect_known in (({0}, False), ({0, 1}, True)):
        seen.clear()
        step, _ = _step_slow_on_calls(slow_calls, slow=0.05)
        workload = types.SimpleNamespace(
            NAME="fake", DESCRIPTION="", make_inputs=lambda rng, quick: {},
            build=lambda lib, inputs, step=step: (step, []), TARGET_SECONDS=0.02)
        run.run_workload(workload, {"deepgrad": None}, quick=False, repeats=1)
        assert ("deepgrad" in seen) is expect_known, slow_calls


def test_runner_checks_both_libraries_after_one_step_even_when_one_is_called_twice(
        monkeypatch):
    """A step slow twice is called twice before timing; the check must still compare both
    libraries after their first step. A session's fresh clone once failed the check this way:
    deepgrad's first two calls (loading MKL) were slow, so its gradients came from a second
    batch and PyTorch's from the first."""
    import time
    import types

    import harness

    monkeypatch.setattr(harness, "measure_alternating", lambda *args: {})

    def build(lib, inputs):
        # a leaf whose gradient is the number of calls so far: a second call changes it
        leaf = types.SimpleNamespace(grad=None)
        calls = []

        def step():
            if lib == "slow" and len(calls) < 2:
                time.sleep(0.05)
            calls.append(None)
            leaf.grad = dg.tensor(np.full(3, float(len(calls)), np.float32))

        return step, [leaf]

    workload = types.SimpleNamespace(
        NAME="fake", DESCRIPTION="", make_inputs=lambda rng, quick: {}, build=build,
        TARGET_SECONDS=0.02)
    result = run.run_workload(workload, {"deepgrad": "slow", "torch": "fast"}, quick=False,
                              repeats=1)
    assert result["check"] == "ok", result["check"]


def test_git_state_is_dirty_for_code_changes_not_for_result_records(tmp_path, monkeypatch):
    """A run right after another finds the first run's record uncommitted in
    benchmarks/results: that is not a change to the code measured, so the second run is not
    marked dirty; an edited or new file anywhere else is."""
    import shutil

    import harness

    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True,
                       env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})

    git("init", "-q")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "code.py")
    git("commit", "-q", "-m", "start")
    monkeypatch.setattr(harness, "REPO_ROOT", tmp_path)
    assert harness.git_state()["dirty"] is False
    (tmp_path / "benchmarks" / "results" / "20261203-000000.json").write_text("{}")
    assert harness.git_state()["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert harness.git_state()["dirty"] is True
    git("checkout", "-q", "code.py")
    (tmp_path / "new.py").write_text("y = 1\n")
    assert harness.git_state()["dirty"] is True
