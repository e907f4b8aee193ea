"""TrainConfig (defaults, validation, JSON round trip), metrics helpers and the curves plot."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.train import (JSONLinesWriter, RunningAverage, TrainConfig, accuracy, correct,
                            read_jsonl)
from deepgrad.train.config import DEFAULT_LR, DEFAULT_MOMENTUM, default_lr


# -- TrainConfig ---------------------------------------------------------------------------------
def test_defaults_are_resolved():
    cfg = TrainConfig("mlp")
    assert cfg.dataset == "mnist"
    assert cfg.optimizer == "sgd"
    assert cfg.lr == DEFAULT_LR["sgd"]
    assert cfg.momentum == DEFAULT_MOMENTUM
    assert cfg.out == "runs/mlp"
    assert cfg.lr_schedule == "lecun98"
    assert TrainConfig("lenet5").lr == default_lr("lenet5", "sgd")
    # lenet5's own step: the reproduction's lr 0.01 at batch 16, scaled to the default batch
    assert TrainConfig("lenet5").batch_size == 64
    assert 0.01 <= default_lr("lenet5", "sgd") <= 0.05
    assert default_lr("lenet5", "adam") == DEFAULT_LR["adam"]
    adam = TrainConfig("mlp", optimizer="adam")
    assert adam.lr == DEFAULT_LR["adam"]
    assert adam.momentum is None


def test_lecun98_schedule_has_the_papers_shape():
    from deepgrad.train.config import lecun98_factor

    # the paper: 0.0005 for 2 passes, 0.0002 for 3, 0.0001 for 3, 0.00005 for 4, then 0.00001
    paper = [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 3
    assert [lecun98_factor(e) * 5e-4 for e in range(15)] == pytest.approx(paper)


def test_json_round_trip():
    cfg = TrainConfig("lenet5", dataset="mnist-sample", epochs=3, batch_size=32, lr=0.02,
                      momentum=0.5, seed=7, distort=True, out="somewhere")
    text = cfg.to_json()
    assert TrainConfig.from_dict(json.loads(text)) == cfg


@pytest.mark.parametrize("kwargs, words", [
    (dict(model="resnet"), ["unknown model", "'resnet'", "lenet5"]),
    (dict(model="mlp", dataset="cifar"), ["unknown dataset", "'cifar'"]),
    (dict(model="mlp", optimizer="rmsprop"), ["unknown optimizer", "'rmsprop'"]),
    (dict(model="mlp", epochs=0), ["epochs", "positive integer", "0"]),
    (dict(model="mlp", batch_size=2.5), ["batch_size", "2.5"]),
    (dict(model="mlp", seed=-1), ["seed", "-1"]),
    (dict(model="mlp", lr=0.0), ["lr", "positive", "0.0"]),
    (dict(model="mlp", lr=float("nan")), ["lr", "nan"]),
    (dict(model="mlp", momentum=1.0), ["momentum", "[0, 1)", "1.0"]),
    (dict(model="mlp", optimizer="adam", momentum=0.9), ["momentum", "'sgd' only", "adam"]),
    (dict(model="mlp", lr_schedule="cosine"), ["unknown lr_schedule", "'cosine'", "lecun98"]),
])
def test_bad_settings_raise_value_error(kwargs, words):
    with pytest.raises(ValueError) as e:
        TrainConfig(**kwargs)
    msg = str(e.value)
    assert msg.startswith("TrainConfig: ")
    for w in words:
        assert w in msg


def test_from_dict_rejects_unknown_and_missing_keys():
    with pytest.raises(ValueError, match="unknown settings 'colour'"):
        TrainConfig.from_dict({"model": "mlp", "colour": "red"})
    with pytest.raises(ValueError, match="'model' is missing"):
        TrainConfig.from_dict({"epochs": 3})
    with pytest.raises(TypeError, match="expected a dict"):
        TrainConfig.from_dict(["mlp"])


# -- metrics -------------------------------------------------------------------------------------
def test_accuracy_and_correct():
    out = dg.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    y = dg.tensor([1, 1, 1])
    assert correct(out, y) == 2
    assert accuracy(out, y) == pytest.approx(2 / 3)
    assert accuracy(np.zeros((0, 3)), np.zeros(0, np.int64)) == 0.0
    with pytest.raises(ValueError, match=r"correct: .*\(3, 2\).*\(2,\)"):
        correct(out, dg.tensor([1, 0]))


def test_running_average_weights_by_count():
    avg = RunningAverage()
    assert math.isnan(avg.value)
    avg.update(2.0, n=3)
    avg.update(4.0, n=1)
    assert avg.value == 2.5
    assert avg.count == 4
    avg.reset()
    assert avg.count == 0


def test_jsonl_writer_appends_rewrites_and_writes_nan_as_null(tmp_path):
    path = tmp_path / "metrics.jsonl"
    w = JSONLinesWriter(path, records=[])
    w.write({"epoch": 1, "loss": 0.5, "n": np.int64(3), "x": np.float32(0.25)})
    w.write({"epoch": 2, "loss": float("nan")})
    assert read_jsonl(path) == [{"epoch": 1, "loss": 0.5, "n": 3, "x": 0.25},
                                {"epoch": 2, "loss": None}]
    # a resumed run rewrites the file with the records it has, dropping the others
    JSONLinesWriter(path, records=[{"epoch": 1}])
    assert read_jsonl(path) == [{"epoch": 1}]
    assert not list(tmp_path.glob("*.tmp-*"))


def test_plot_curves_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from deepgrad.viz import plot_curves

    records = [{"epoch": e, "train_loss": 1.0 / e, "test_loss": 1.2 / e,
                "train_accuracy": 1 - 0.1 / e, "test_accuracy": None if e == 2 else 1 - 0.2 / e}
               for e in (1, 2, 3)]
    path = tmp_path / "curves.png"
    plot_curves(records, path, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


# -- per-model input pipelines -------------------------------------------------------------------
def test_lenet5_pipeline_pads_and_uses_the_papers_levels():
    from deepgrad.models import MODELS
    from deepgrad.train.pipeline import input_transform

    batch = np.zeros((2, 28, 28), np.uint8)
    batch[:, 10:18, 12:16] = 255
    x = input_transform("lenet5")(batch)
    assert x.shape == (2,) + MODELS["lenet5"].input_shape and x.dtype == np.float32
    assert x.data[0, 0, 0, 0] == pytest.approx(-0.1)    # padding is background
    assert x.data[0, 0, 2 + 10, 2 + 12] == pytest.approx(1.175)
    np.testing.assert_allclose(np.unique(x.data), [-0.1, 1.175], rtol=1e-6)


@pytest.mark.parametrize("model", ["mlp", "lenet5-classic", "lenet5-modern"])
def test_other_models_standardise_with_mnist_statistics(model):
    from deepgrad.models import MODELS
    from deepgrad.train.pipeline import input_transform

    batch = np.full((3, 28, 28), 255, np.uint8)
    batch[:, :, :14] = 0
    x = input_transform(model)(batch)
    assert x.shape == (3,) + MODELS[model].input_shape
    assert x.data.min() == pytest.approx(-0.1307 / 0.3081, rel=1e-6)
    assert x.data.max() == pytest.approx((1 - 0.1307) / 0.3081, rel=1e-6)


def test_distortions_follow_their_own_generator():
    from deepgrad.data.datasets import MNIST
    from deepgrad.train.pipeline import input_transform, make_generators, train_transform

    images = MNIST(train=False, sample=True).data.data[:16]
    plain = train_transform("lenet5")(images).data
    assert np.array_equal(plain, input_transform("lenet5")(images).data)
    a = train_transform("lenet5", True, make_generators(5)["distort"])(images).data
    dg.manual_seed(123)  # the global generator plays no part
    b = train_transform("lenet5", True, make_generators(5)["distort"])(images).data
    c = train_transform("lenet5", True, make_generators(6)["distort"])(images).data
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, plain)
    assert a.shape == plain.shape
