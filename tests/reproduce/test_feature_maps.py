"""The quick feature-maps reproduction: every layer's output of a briefly trained LeNet-5 has
the paper's shape, and the figures are drawn."""
from __future__ import annotations

import os

import numpy as np
import pytest

import deepgrad.reproduce as reproduce


def test_feature_maps_quick(tmp_path):
    report = reproduce.run("feature-maps", quick=True, out_dir=str(tmp_path))
    r = report.results
    assert r["shapes"] == {"c1": (6, 28, 28), "s2": (6, 14, 14), "c3": (16, 10, 10),
                           "s4": (16, 5, 5), "c5": (120, 1, 1), "f6": (84,), "output": (10,)}
    assert r["c1_kernels_shape"] == (6, 1, 5, 5)
    assert not r["from_checkpoint"]  # the quick run trains its own network
    assert r["test_error"] < 0.5  # the drawn network has learned something (chance: 0.9)
    assert 0 <= r["predicted"] <= 9 and 0.1 <= r["probability"] <= 1.0
    for name in ("report.md", "feature_maps.png", "c1_kernels.png"):
        assert (tmp_path / name).exists()


def _untrained_lenet5_file(path):
    """A file in the format `deepgrad reproduce lenet5` writes, without training."""
    import deepgrad as dg
    from deepgrad.models import LeNet5
    from deepgrad.reproduce._mnist import save_model

    dg.manual_seed(3)
    model = LeNet5()
    save_model(model, str(path), {"epochs": 0, "dataset": "none", "distort": False})
    return model


def test_full_run_without_a_network_names_the_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a fresh folder: no docs/reproductions/lenet5 here
    with pytest.raises(FileNotFoundError) as e:
        reproduce.run("feature-maps", quick=False, out_dir=str(tmp_path / "out"))
    message = str(e.value)
    for words in ("docs/reproductions/lenet5/lenet5.safetensors".replace("/", os.sep),
                  "deepgrad reproduce lenet5", "--checkpoint", "--quick"):
        assert words in message
    assert not (tmp_path / "out" / "report.md").exists()


def test_full_run_uses_the_lenet5_reproductions_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "docs" / "reproductions" / "lenet5"
    folder.mkdir(parents=True)
    model = _untrained_lenet5_file(folder / "lenet5.safetensors")
    # a whole full run would score the full MNIST test set; its lookup is checked alone
    from deepgrad.reproduce import feature_maps

    assert feature_maps.default_checkpoint() == os.path.join(
        "docs", "reproductions", "lenet5", "lenet5.safetensors")
    loaded, origin = feature_maps.load_network(feature_maps.default_checkpoint())
    np.testing.assert_array_equal(loaded.c1.weight.data, model.c1.weight.data)
    assert "deepgrad reproduce lenet5" in origin


def test_checkpoint_option_reads_a_reproduction_file_or_its_folder(tmp_path):
    model = _untrained_lenet5_file(tmp_path / "lenet5.safetensors")
    for given in (tmp_path / "lenet5.safetensors", tmp_path):
        out = tmp_path / f"out_{given.name}"
        report = reproduce.run("feature-maps", quick=True, out_dir=str(out),
                               checkpoint=str(given))
        assert report.results["from_checkpoint"]
        assert str(tmp_path / "lenet5.safetensors") in report.results["origin"]
        assert (out / "c1_kernels.png").exists()
    from deepgrad.reproduce import feature_maps

    loaded, _ = feature_maps.load_network(str(tmp_path))
    np.testing.assert_array_equal(loaded.c1.weight.data, model.c1.weight.data)


def test_checkpoint_option_reads_a_training_checkpoint(tmp_path):
    from deepgrad.reproduce import feature_maps
    from deepgrad.train import TrainConfig, run

    run(TrainConfig("lenet5", dataset="mnist-sample", epochs=1, out=str(tmp_path / "lenet")),
        progress=False)
    model, origin = feature_maps.load_network(str(tmp_path / "lenet"))
    assert "deepgrad train lenet5" in origin and "1 epochs on mnist-sample" in origin
    assert model.c1.weight.shape == (6, 1, 5, 5)

    run(TrainConfig("mlp", dataset="mnist-sample", epochs=1, out=str(tmp_path / "mlp")),
        progress=False)
    with pytest.raises(ValueError, match="model 'mlp'.*'lenet5'"):
        feature_maps.load_network(str(tmp_path / "mlp" / "last.safetensors"))


def test_checkpoint_option_errors(tmp_path):
    from deepgrad.reproduce import feature_maps

    with pytest.raises(FileNotFoundError, match="not found"):
        feature_maps.load_network(str(tmp_path / "nothing.safetensors"))
    with pytest.raises(FileNotFoundError, match="holds no lenet5.safetensors"):
        feature_maps.load_network(str(tmp_path))
    with pytest.raises(ValueError, match="unknown option"):
        reproduce.run("xor", quick=True, out_dir=str(tmp_path), checkpoint="x")


def test_cli_checkpoint_is_for_feature_maps_only(tmp_path, capsys):
    from deepgrad.cli import main

    status = main(["reproduce", "xor", "--quick", "--out", str(tmp_path),
                   "--checkpoint", "x.safetensors"])
    assert status == 2
    assert "--checkpoint applies to feature-maps only" in capsys.readouterr().err
    status = main(["reproduce", "feature-maps", "--quick", "--out", str(tmp_path),
                   "--checkpoint", str(tmp_path / "missing.safetensors")])
    assert status == 1
    err = capsys.readouterr().err
    assert "missing.safetensors not found" in err and "deepgrad train lenet5" in err
