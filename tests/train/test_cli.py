"""The ``deepgrad`` command line as a user runs it: ``python -m deepgrad ...`` in a subprocess.

Training runs use the MNIST sample shipped with deepgrad (no files needed); the end-to-end test
on the full MNIST needs ``$DEEPGRAD_DATA`` and is skipped without it. The subprocesses run
with one BLAS thread: the networks are small, and several test processes running at once would
otherwise slow each other down many times over with competing BLAS threads.
"""
from __future__ import annotations

import glob
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import deepgrad as dg
import deepgrad.io as _io  # noqa: F401  (makes dg.io available)

pytest.importorskip("safetensors")

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DIGITS = sorted(glob.glob(os.path.join(REPO, "examples", "digits", "*.png")))
# the settings of the reference run; the interrupted runs below must end with its weights
RUN = ["--dataset", "mnist-sample", "--epochs", "2", "--batch-size", "64"]


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("DEEPGRAD_DEBUG", None)
    env.update(extra)
    return env


def deepgrad(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deepgrad", *map(str, args)], cwd=cwd,
                          env=env or _env(), capture_output=True, text=True, timeout=timeout)


def start(*args, cwd=None) -> subprocess.Popen:
    # SIGINT back to its default in the child: under a job started in the background of a
    # non-interactive shell (`make test &`), the child inherits SIGINT ignored, Python then
    # installs no handler for it, and the Ctrl-C test below failed with the run finishing
    return subprocess.Popen([sys.executable, "-m", "deepgrad", *map(str, args)], cwd=cwd,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_sigint)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def assert_error(result, *words, status=None) -> str:
    """One line on stderr starting ``deepgrad: error:``, containing ``words``; no traceback."""
    assert result.returncode != 0
    if status is not None:
        assert result.returncode == status
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("deepgrad: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def weights(path) -> dict:
    return {k: v.data for k, v in dg.io.load(path)["model"].items()}


def assert_same_weights(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k


def wait_for(path, proc, timeout=240.0) -> None:
    end = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise AssertionError(f"training ended before {path} appeared: "
                                 f"{proc.stderr.read()}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A complete run: mlp, 2 epochs on mnist-sample, default settings and seed."""
    out = tmp_path_factory.mktemp("cli") / "ref"
    result = deepgrad("train", "mlp", *RUN, "--out", out)
    assert result.returncode == 0, result.stderr
    return out, result


# -- train, eval, predict, summary ----------------------------------------------------------------
def test_train_prints_progress_and_writes_its_files(reference):
    out, result = reference
    lines = result.stdout.splitlines()
    assert lines[0].startswith("training mlp on mnist-sample (6,000 training and 1,000 test "
                               "images) for 2 epochs: sgd, lr 0.05, momentum 0.9")
    # not a terminal: plain progress lines with loss, accuracy and samples/s
    assert re.search(r"epoch 1/2 \[\s*\d+/6000\]  loss \d\.\d{4}  acc \d+\.\d\d%  \d+ samples/s",
                     result.stdout)
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and "test loss" in epochs[1] and "(error" in epochs[1]
    assert lines[-1].startswith("best test accuracy")
    assert {"best.safetensors", "last.safetensors", "metrics.jsonl"} <= set(os.listdir(out))
    if _has("matplotlib"):
        assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    records = [eval_json(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[-1]["test_accuracy"] >= 0.88  # the quick end-to-end check for CI
    state = dg.io.load(out / "last.safetensors")
    assert state["config"]["model"] == "mlp" and state["epoch"] == 2
    assert state["deepgrad_version"] == dg.__version__


def eval_json(line: str) -> dict:
    import json

    return json.loads(line)


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def test_eval_prints_loss_accuracy_and_error(reference):
    out, _ = reference
    result = deepgrad("eval", out / "best.safetensors")
    assert result.returncode == 0, result.stderr
    m = re.search(r"mnist-sample test set \(1,000 images\): loss (\d\.\d+), accuracy "
                  r"([\d.]+)%, error ([\d.]+)%", result.stdout)
    assert m, result.stdout
    best = max(eval_json(line)["test_accuracy"]
               for line in (out / "metrics.jsonl").read_text().splitlines())
    assert float(m.group(2)) == pytest.approx(100 * best, abs=0.006)
    assert float(m.group(2)) + float(m.group(3)) == pytest.approx(100, abs=0.02)


def test_predict_reads_the_demo_digits(reference):
    out, _ = reference
    assert len(DIGITS) == 10
    result = deepgrad("predict", out / "best.safetensors", *DIGITS)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(DIGITS)
    for path, line in zip(DIGITS, lines):
        m = re.fullmatch(r"(.+): (\d) \((\d+\.\d)%\)", line)
        assert m and m.group(1) == path, line
        assert int(m.group(2)) == int(os.path.basename(path)[0]), line


def test_summary_prints_the_model_table():
    result = deepgrad("summary", "lenet5")
    assert result.returncode == 0, result.stderr
    from deepgrad.models import MODELS, create

    table = str(dg.summary(create("lenet5"), MODELS["lenet5"].input_shape,
                           print_result=False))
    assert table in result.stdout
    assert "Total params: 60,850" in result.stdout


def test_help_and_version():
    assert deepgrad("--version").stdout.strip() == f"deepgrad {dg.__version__}"
    result = deepgrad("train", "--help")
    assert result.returncode == 0
    for option in ("--dataset", "--epochs", "--batch-size", "--lr", "--optimizer",
                   "--momentum", "--seed", "--out", "--resume", "--distort"):
        assert option in result.stdout


# -- interrupting and resuming ------------------------------------------------------------------
def test_killed_run_resumes_to_the_same_weights(reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "killed"
    proc = start("train", "mlp", *RUN, "--out", out)
    wait_for(out / "last.safetensors", proc)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.communicate()
    assert dg.io.load(out / "last.safetensors")["epoch"] == 1
    result = deepgrad("train", "mlp", "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    assert "resuming mlp after epoch 1" in result.stdout
    assert_same_weights(ref / "last.safetensors", out / "last.safetensors")
    assert_same_weights(ref / "best.safetensors", out / "best.safetensors")
    strip = [{k: v for k, v in eval_json(line).items()
              if k not in ("seconds", "samples_per_second")}
             for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert strip == [{k: v for k, v in eval_json(line).items()
                      if k not in ("seconds", "samples_per_second")}
                     for line in (ref / "metrics.jsonl").read_text().splitlines()]


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(reference, tmp_path):
    ref, _ = reference
    # the signal must land in epoch 2; on a loaded machine the run can finish first, so the
    # scenario is retried in a fresh folder (each attempt asserts everything below)
    for attempt in range(3):
        out = tmp_path / f"stopped{attempt}"
        proc = start("train", "mlp", *RUN, "--out", out)
        wait_for(out / "last.safetensors", proc)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        if proc.returncode != 0:
            break
    assert proc.returncode == 130
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last == (f"deepgrad: interrupted in epoch 2/2; epoch 1 is saved in "
                    f"{out / 'last.safetensors'}. Resume with: deepgrad train mlp --out {out} "
                    f"--resume")
    result = deepgrad("train", "mlp", "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    assert_same_weights(ref / "last.safetensors", out / "last.safetensors")


def test_interrupted_before_the_first_checkpoint(tmp_path):
    out = tmp_path / "early"
    proc = start("train", "mlp", *RUN, "--out", out)
    # the first progress line shows that training is under way
    line = proc.stdout.readline()
    assert line.startswith("training mlp")
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert stderr.strip().splitlines()[-1] == (
        "deepgrad: interrupted in epoch 1/2 before any checkpoint was saved; run the same "
        "command again to start over")


def test_resume_of_a_finished_run_has_nothing_to_do(reference):
    out, _ = reference
    before = (out / "last.safetensors").stat().st_mtime_ns
    result = deepgrad("train", "mlp", "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout
    assert (out / "last.safetensors").stat().st_mtime_ns == before


# -- bad input: one line on stderr, no traceback --------------------------------------------------
@pytest.mark.parametrize("args, words, status", [
    ([], ["missing command", "train, eval, predict, summary"], 2),
    (["fly"], ["invalid choice: 'fly'"], 2),
    (["train"], ["required: MODEL"], 2),
    (["train", "resnet"], ["unknown model 'resnet'", "lenet5, lenet5-classic"], 2),
    (["summary", "resnet"], ["unknown model 'resnet'"], 2),
    (["train", "mlp", "--colour", "red"], ["unrecognized arguments: --colour red",
                                           "deepgrad train --help"], 2),
    (["train", "mlp", "--epochs", "0"], ["--epochs", "positive integer", "'0'"], 2),
    (["train", "mlp", "--lr", "fast"], ["--lr", "positive number", "'fast'"], 2),
    (["train", "mlp", "--dataset", "cifar"], ["--dataset", "'cifar'", "mnist-sample"], 2),
    (["train", "mlp", "--optimizer", "adam", "--momentum", "0.5"],
     ["momentum applies to optimizer 'sgd' only"], 1),
    (["eval"], ["required: CHECKPOINT"], 2),
    (["predict", "x.safetensors"], ["required: IMAGE"], 2),
])
def test_usage_errors(args, words, status, tmp_path):
    assert_error(deepgrad(*args, cwd=tmp_path), *words, status=status)


def test_missing_dataset(tmp_path):
    result = deepgrad("train", "mlp", "--epochs", "1", "--out", tmp_path / "r",
                      env=_env(DEEPGRAD_DATA=str(tmp_path / "nowhere")))
    assert_error(result, "MNIST", "not found", "nowhere", "--dataset mnist-sample", status=1)
    assert not (tmp_path / "r" / "last.safetensors").exists()


def test_resume_errors(reference, tmp_path):
    out, _ = reference
    assert_error(deepgrad("train", "mlp", "--out", tmp_path / "none", "--resume"),
                 "cannot resume", "does not exist")
    assert_error(deepgrad("train", "lenet5", "--out", out, "--resume"),
                 "checkpoint of model 'mlp', not 'lenet5'")
    assert_error(deepgrad("train", "mlp", "--out", out, "--resume", "--lr", "0.5"),
                 "has lr=0.05, not 0.5")
    before = (out / "last.safetensors").stat().st_mtime_ns
    assert_error(deepgrad("train", "mlp", *RUN, "--out", out), "already holds a run",
                 "--resume")
    assert (out / "last.safetensors").stat().st_mtime_ns == before


def test_bad_checkpoints(reference, tmp_path):
    out, _ = reference
    good = (out / "best.safetensors").read_bytes()
    assert_error(deepgrad("eval", tmp_path / "missing.safetensors"), "does not exist")
    (tmp_path / "cut.safetensors").write_bytes(good[:len(good) // 2])
    assert_error(deepgrad("eval", tmp_path / "cut.safetensors"), "cut.safetensors",
                 "truncated")
    flipped = bytearray(good)
    flipped[-100] ^= 0xFF
    (tmp_path / "flip.safetensors").write_bytes(bytes(flipped))
    assert_error(deepgrad("predict", tmp_path / "flip.safetensors", DIGITS[0]),
                 "flip.safetensors", "corrupted")
    (tmp_path / "text.safetensors").write_text("hello")
    assert_error(deepgrad("eval", tmp_path / "text.safetensors"), "not a safetensors file")
    # weights only, no training state
    from deepgrad.models import create

    dg.io.save(create("mlp").state_dict(), tmp_path / "weights.safetensors")
    assert_error(deepgrad("eval", tmp_path / "weights.safetensors"),
                 "not a deepgrad training checkpoint")
    # a checkpoint whose weights belong to another model than its config names
    state = dg.io.load(out / "best.safetensors")
    state["config"]["model"] = "lenet5-classic"
    dg.io.save(state, tmp_path / "other.safetensors")
    assert_error(deepgrad("predict", tmp_path / "other.safetensors", DIGITS[0]),
                 "does not hold weights of model 'lenet5-classic'")


def test_bad_images(reference, tmp_path):
    out, _ = reference
    (tmp_path / "text.png").write_text("not an image")
    result = deepgrad("predict", out / "best.safetensors", tmp_path / "text.png")
    assert_error(result, "cannot read", "text.png")
    assert_error(deepgrad("predict", out / "best.safetensors", tmp_path / "gone.png"),
                 "gone.png", "does not exist")
    from deepgrad.images import write_png

    write_png(tmp_path / "blank.png", np.full((20, 30), 255, np.uint8))
    assert_error(deepgrad("predict", out / "best.safetensors", tmp_path / "blank.png"),
                 "blank.png", "no digit")
    # good images are still classified; the bad one is reported and the status is 1
    result = deepgrad("predict", out / "best.safetensors", DIGITS[0], tmp_path / "text.png")
    assert result.returncode == 1
    assert result.stdout.startswith(DIGITS[0] + ": ")
    assert_error(result, "text.png")


# -- the end-to-end run on the full MNIST (CI's quick variant: the reference run on the sample) --
def _mnist_dir():
    root = os.environ.get("DEEPGRAD_DATA")
    if not root or not glob.glob(os.path.join(root, "mnist", "train-images-idx3-ubyte*")):
        pytest.skip("the full MNIST is not available; set DEEPGRAD_DATA to the folder holding "
                    "mnist/ (make test does)")
    return root


def test_one_epoch_on_full_mnist_reaches_95_percent(tmp_path):
    # about 10 s on two cores (the MLP reaches about 97%)
    _mnist_dir()
    out = tmp_path / "full"
    result = deepgrad("train", "mlp", "--dataset", "mnist", "--epochs", "1", "--out", out,
                      timeout=900)
    assert result.returncode == 0, result.stderr
    record = eval_json((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["test_accuracy"] >= 0.95, record
    assert "60,000 training and 10,000 test images" in result.stdout
