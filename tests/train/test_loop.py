"""Trainer / fit / evaluate, callbacks, checkpoints and bit-exact resuming, in process."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import deepgrad as dg
import deepgrad.io as _io  # noqa: F401  (makes dg.io available)
from deepgrad import nn, optim
from deepgrad.data import DataLoader, TensorDataset
from deepgrad.train import (BEST, CURVES, LAST, METRICS, Callback, Curves, ProgressBar,
                            TrainConfig, Trainer, TrainingDiverged, evaluate, fit,
                            load_checkpoint, read_jsonl, run)
from deepgrad.train.config import lecun98_factor
from deepgrad.train.loop import TrainingInterrupted

pytest.importorskip("safetensors")


def _blobs(n: int = 192, seed: int = 0):
    """Two Gaussian blobs in 2-D, labels 0 and 1."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, 2)).astype(np.float32) + np.where(y[:, None] == 1, 1.5, -1.5)
    return TensorDataset(dg.from_numpy(x.astype(np.float32)), dg.from_numpy(y.astype(np.int64)))


def _setup(seed: int = 0, callbacks=()):
    """A small net with dropout (draws from the global generator), shuffled by its own
    generator: everything resuming must restore."""
    dg.manual_seed(seed)
    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 2))
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = optim.lr_scheduler.LambdaLR(opt, lecun98_factor)
    gen = dg.Generator().manual_seed(seed + 1)
    train = DataLoader(_blobs(), batch_size=16, shuffle=True, generator=gen)
    test = DataLoader(_blobs(64, seed=1), batch_size=32)
    return Trainer(model, opt, train, test, scheduler=sched, callbacks=callbacks,
                   generators={"loader": gen})


def _weights(model) -> dict:
    return {k: v.data.copy() for k, v in model.state_dict().items()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, trainer):
        self.events.append("begin")

    def on_epoch_begin(self, trainer, epoch):
        self.events.append(f"epoch{epoch}")

    def on_batch_end(self, trainer, logs):
        self.events.append("batch")
        assert 0 < logs["seen"] <= logs["total"] == 192
        assert 0.0 <= logs["accuracy"] <= 1.0

    def on_epoch_end(self, trainer, record):
        self.events.append(f"end{record['epoch']}")

    def on_train_end(self, trainer):
        self.events.append("stop" if trainer.interrupted else "done")


def test_fit_learns_and_records_metrics():
    rec = Recorder()
    trainer = _setup(callbacks=[rec])
    history = trainer.fit(3)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    keys = {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
            "test_error", "lr", "seconds", "samples_per_second"}
    assert all(set(r) == keys for r in history)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_accuracy"] > 0.9
    assert history[-1]["test_error"] == pytest.approx(1 - history[-1]["test_accuracy"])
    assert trainer.best_accuracy == max(r["test_accuracy"] for r in history)
    assert rec.events == (["begin", "epoch1"] + ["batch"] * 12 + ["end1", "epoch2"]
                          + ["batch"] * 12 + ["end2", "epoch3"] + ["batch"] * 12
                          + ["end3", "done"])


def test_fit_function_and_evaluate_keep_the_mode():
    trainer = _setup()
    history = fit(trainer.model, trainer.optimizer, trainer.train_loader, epochs=1)
    assert history[0]["test_loss"] is None
    trainer.model.train()
    result = evaluate(trainer.model, trainer.test_loader)
    assert trainer.model.training
    assert result["samples"] == 64
    assert result["error"] == pytest.approx(1 - result["accuracy"])
    trainer.model.eval()
    evaluate(trainer.model, trainer.test_loader)
    assert not trainer.model.training


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_stops_with_a_clear_error():
    # two linear layers multiply their growth: the weights overflow float32 within a few steps
    model = nn.Sequential(nn.Linear(2, 16), nn.Linear(16, 2))
    loader = DataLoader(_blobs(), batch_size=16)
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=1e20), loader)
    with pytest.raises(TrainingDiverged, match=r"training loss became (nan|inf) in epoch 1 "
                                               r"\(batch \d+\); the learning rate 1e\+20"):
        trainer.fit(3)


class StopAt(Callback):
    def __init__(self, epoch, batch):
        self.at = (epoch, batch)

    def on_batch_end(self, trainer, logs):
        if (logs["epoch"], logs["batch"]) == self.at:
            raise KeyboardInterrupt


def test_resume_from_state_dict_gives_the_same_weights(tmp_path):
    full = _setup()
    full.fit(4)
    # interrupted in epoch 3; the state after epoch 2 was saved through deepgrad.io
    saver = _Saver(tmp_path / "ckpt.safetensors")
    part = _setup(callbacks=[saver, StopAt(3, 5)])
    with pytest.raises(KeyboardInterrupt):
        part.fit(4)
    assert part.interrupted
    dg.manual_seed(1234)  # the process goes on using random numbers meanwhile
    resumed = _setup(seed=99)  # different initial weights, overwritten by the checkpoint
    resumed.load_state_dict(dg.io.load(tmp_path / "ckpt.safetensors"))
    assert resumed.epoch == 2 and len(resumed.history) == 2
    resumed.fit(4)
    _assert_same(_weights(full.model), _weights(resumed.model))
    for a, b in zip(full.history, resumed.history):
        assert a["test_accuracy"] == b["test_accuracy"]
        assert a["train_loss"] == b["train_loss"]
    # the schedule went on where it was: 0.4 of the initial lr from epoch 3
    assert [r["lr"] for r in resumed.history] == pytest.approx([0.1, 0.1, 0.04, 0.04])


class _Saver(Callback):
    def __init__(self, path):
        self.path = path

    def on_epoch_end(self, trainer, record):
        dg.io.save(trainer.state_dict(), self.path)


def test_load_state_dict_rejects_other_files():
    trainer = _setup()
    with pytest.raises(ValueError, match="not a training checkpoint"):
        trainer.load_state_dict({"model": trainer.model.state_dict()})


# -- run(): a whole run from a config, on the embedded MNIST sample -----------------------------
@pytest.fixture(autouse=True)
def _small_sample(monkeypatch):
    """The first 1,024 training and 512 test digits of mnist-sample, to keep these tests fast
    (the command-line tests run on the whole sample)."""
    from deepgrad.data import Subset
    from deepgrad.train import pipeline

    load = pipeline.load_mnist

    def small(dataset, train, transform=None):
        return Subset(load(dataset, train, transform), range(1024 if train else 512))

    monkeypatch.setattr(pipeline, "load_mnist", small)


@pytest.fixture
def no_plots(monkeypatch):
    """Skip drawing curves.png (a third of a second per epoch) where a test does not look at
    it."""
    import deepgrad.viz

    monkeypatch.setattr(deepgrad.viz, "plot_curves", lambda *args, **kwargs: None)


def _config(out, **kw) -> TrainConfig:
    settings = dict(dataset="mnist-sample", epochs=1, batch_size=64, out=str(out))
    settings.update(kw)
    return TrainConfig("mlp", **settings)


def test_run_writes_checkpoints_metrics_and_curves(tmp_path):
    trainer = run(_config(tmp_path / "r", epochs=2), progress=False)
    out = tmp_path / "r"
    names = {LAST, BEST, METRICS}
    try:
        import matplotlib  # noqa: F401

        names.add(CURVES)
    except ImportError:
        pass
    assert names <= set(os.listdir(out))
    lines = read_jsonl(out / METRICS)
    assert [r["epoch"] for r in lines] == [1, 2]
    assert set(lines[0]) == {"epoch", "train_loss", "train_accuracy", "test_loss",
                             "test_accuracy", "test_error", "lr", "seconds",
                             "samples_per_second"}
    state = dg.io.load(out / LAST)
    assert state["epoch"] == 2
    assert state["deepgrad_version"] == dg.__version__
    assert state["config"] == trainer.config
    assert state["metrics"] == trainer.history
    assert set(state["rng"]) == {"global", "loader", "distort"}
    assert set(state["optimizer"]) == {"state", "param_groups"}
    assert state["optimizer"]["state"][0]["momentum_buffer"].shape == (512, 784)
    assert len(trainer.train_loader.dataset) == 1024
    model, config, best = load_checkpoint(out / BEST)
    assert config.model == "mlp" and not model.training
    assert best["epoch"] == trainer.best_epoch
    assert lines[trainer.best_epoch - 1]["test_accuracy"] == max(r["test_accuracy"]
                                                                 for r in lines)
    # a second run into the same directory would overwrite it: refused
    with pytest.raises(FileExistsError, match="already holds a run"):
        run(_config(out), progress=False)


def test_same_seed_same_weights_other_seed_other_weights(tmp_path, no_plots):
    a = run(_config(tmp_path / "a", distort=True, seed=3), progress=False)
    dg.manual_seed(77)
    b = run(_config(tmp_path / "b", distort=True, seed=3), progress=False)
    c = run(_config(tmp_path / "c", distort=True, seed=4), progress=False)
    _assert_same(_weights(a.model), _weights(b.model))
    assert not np.array_equal(_weights(a.model)["1.weight"], _weights(c.model)["1.weight"])


def test_run_interrupted_and_resumed_matches_uninterrupted(tmp_path, no_plots):
    kw = dict(epochs=2, distort=True, optimizer="adam")
    full = run(_config(tmp_path / "full", **kw), progress=False)
    with pytest.raises(TrainingInterrupted) as e:
        run(_config(tmp_path / "part", **kw), progress=False, callbacks=[StopAt(2, 5)])
    assert (e.value.epoch, e.value.saved_epoch) == (2, 1)
    assert len(read_jsonl(tmp_path / "part" / METRICS)) == 1
    resumed = run(_config(tmp_path / "part", **kw), resume=True, progress=False)
    _assert_same(_weights(full.model), _weights(resumed.model))
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_second")}
             for r in read_jsonl(tmp_path / "part" / METRICS)]
    assert strip == [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_second")}
                     for r in read_jsonl(tmp_path / "full" / METRICS)]


def test_resume_refuses_other_settings_and_missing_runs(tmp_path, no_plots):
    with pytest.raises(FileNotFoundError, match="cannot resume.*does not exist"):
        run(_config(tmp_path / "none"), resume=True, progress=False)
    run(_config(tmp_path / "r"), progress=False)
    with pytest.raises(ValueError, match="has lr=0.05, not 0.2"):
        run(_config(tmp_path / "r", lr=0.2), resume=True, progress=False)
    # more epochs are allowed: the run goes on
    more = run(_config(tmp_path / "r", epochs=2), resume=True, progress=False)
    assert [r["epoch"] for r in more.history] == [1, 2]


# -- progress and curves without their optional packages -----------------------------------------
def test_progress_plain_lines_and_tqdm_bar():
    import io

    log = io.StringIO()
    trainer = _setup(callbacks=[ProgressBar(file=io.StringIO(), log=log, use_tqdm=False)])
    trainer.fit(1)
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("  epoch 1/1 [ ")
    assert "loss" in lines[0] and "acc" in lines[0] and "samples/s" in lines[0]
    assert lines[-1].startswith("epoch 1/1 | train loss") and "test loss" in lines[-1]
    pytest.importorskip("tqdm")
    bar, log = io.StringIO(), io.StringIO()
    trainer = _setup(callbacks=[ProgressBar(file=bar, log=log, use_tqdm=True, mininterval=0)])
    trainer.fit(1)
    assert "samples/s" in bar.getvalue() and "loss" in bar.getvalue()
    assert log.getvalue().startswith("epoch 1/1 | train loss")


def test_without_tqdm_the_bar_falls_back_to_lines(monkeypatch):
    import io

    monkeypatch.setitem(sys.modules, "tqdm", None)
    log = io.StringIO()
    _setup(callbacks=[ProgressBar(file=_Terminal(), log=log)]).fit(1)
    assert log.getvalue().startswith("  epoch 1/1 [")


class _Terminal:
    def isatty(self):
        return True

    def write(self, s):
        raise AssertionError("nothing should be drawn")

    def flush(self):
        pass


def test_without_matplotlib_curves_warn_once(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    curves = Curves(tmp_path / "curves.png")
    _setup(callbacks=[curves]).fit(2)
    err = capsys.readouterr().err
    assert err.count("matplotlib is not installed") == 1
    assert "deepgrad[train]" in err
    assert not (tmp_path / "curves.png").exists()
