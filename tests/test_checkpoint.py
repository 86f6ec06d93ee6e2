"""Checkpoint files: round trip, atomicity under a crash mid-write, pruning, and loading weights for sampling."""

from __future__ import annotations

import json
import warnings

import pytest
import safetensors.torch
import torch
from helpers.trainer_toy import MODEL_CONFIG, ToyDenoiser

from noisecraft.training import checkpoint as ckpt
from noisecraft.training.ema import make_ema, update_ema

TRAIN_CONFIG = {"lr": 1e-3}


def trained_objects(seed: int = 0):
    """A toy model, its EMA, an optimizer and scheduler that have taken one step (so their states are non-trivial)."""
    torch.manual_seed(seed)
    model = ToyDenoiser(hidden=8)
    ema = make_ema(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 10))
    model(torch.randn(4, 2), torch.ones(4)).square().sum().backward()
    optimizer.step()
    scheduler.step()
    update_ema(ema, model, decay=0.5)
    return model, ema, optimizer, scheduler


def save(out_dir, step, objects, *, keep=None):
    model, ema, optimizer, scheduler = objects
    return ckpt.save_checkpoint(out_dir, step, model=model, ema=ema, optimizer=optimizer, scheduler=scheduler,
                                model_config=MODEL_CONFIG, train_config=TRAIN_CONFIG,
                                training_state={"samples_seen": 8 * step, "rng": [{"generator": torch.arange(3)}]},
                                keep=keep)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_round_trip_restores_every_object(tmp_path):
    objects = trained_objects(seed=0)
    path = save(tmp_path, 7, objects)
    assert path == tmp_path / "checkpoints" / "step_00000007"
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "ema.safetensors", "model.safetensors",
                                                       "state.pt"]
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_00000007"
    assert ckpt.latest_checkpoint(tmp_path) == path

    fresh = trained_objects(seed=1)
    state = ckpt.load_checkpoint(path, *fresh)
    for original, restored in zip(objects[:2], fresh[:2]):
        assert_same_weights(original, restored)
    saved_adam, loaded_adam = objects[2].state_dict()["state"], fresh[2].state_dict()["state"]
    for index in saved_adam:
        assert torch.equal(saved_adam[index]["exp_avg_sq"], loaded_adam[index]["exp_avg_sq"])
    assert fresh[3].last_epoch == objects[3].last_epoch
    assert state["step"] == 7 and state["samples_seen"] == 56
    assert torch.equal(state["rng"][0]["generator"], torch.arange(3))
    assert state["config"] == {"model_config": MODEL_CONFIG, "train_config": TRAIN_CONFIG, "step": 7}


def test_crash_while_writing_leaves_previous_checkpoint_valid(tmp_path, monkeypatch):
    objects = trained_objects()
    first = save(tmp_path, 1, objects)
    real_write = ckpt._write_durable

    def write_then_crash(path, data):
        if path.name == "ema.safetensors":  # the model file is already on disk at this point
            raise OSError("disk full")
        real_write(path, data)

    monkeypatch.setattr(ckpt, "_write_durable", write_then_crash)
    with pytest.raises(OSError, match="disk full"):
        save(tmp_path, 2, objects)
    monkeypatch.undo()

    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000001"]
    assert ckpt.latest_checkpoint(tmp_path) == first
    assert ckpt.load_checkpoint(first, *trained_objects(seed=1))["step"] == 1


def test_leftovers_of_a_killed_save_are_ignored_then_removed(tmp_path):
    objects = trained_objects()
    first = save(tmp_path, 1, objects)
    # What SIGKILL during a save leaves behind: a half-filled temporary directory and a temporary `latest`.
    stale = tmp_path / "checkpoints" / ".tmp-step_00000002.4242"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"\x00\x01")
    (tmp_path / "checkpoints" / ".tmp-latest.4242").write_text("step_00000002")
    assert ckpt.latest_checkpoint(tmp_path) == first
    assert ckpt.list_checkpoints(tmp_path) == [first]

    save(tmp_path, 3, objects)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["latest", "step_00000001", "step_00000003"]


def test_missing_latest_file_falls_back_to_newest_complete_checkpoint(tmp_path):
    objects = trained_objects()
    save(tmp_path, 1, objects)
    second = save(tmp_path, 2, objects)
    (tmp_path / "checkpoints" / "latest").unlink()  # crash between the directory rename and the `latest` update
    assert ckpt.latest_checkpoint(tmp_path) == second
    assert ckpt.latest_checkpoint(tmp_path / "elsewhere") is None


def test_keep_prunes_all_but_newest(tmp_path):
    objects = trained_objects()
    for step in (10, 20, 30, 40, 50):
        save(tmp_path, step, objects, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000040", "step_00000050"]


def test_saving_the_same_step_twice_replaces_it(tmp_path):
    save(tmp_path, 5, trained_objects(seed=0))
    replacement = trained_objects(seed=1)
    path = save(tmp_path, 5, replacement)
    loaded = ToyDenoiser(hidden=8)
    ckpt.load_weights(loaded, path, use_ema=False)
    assert_same_weights(loaded, replacement[0])


def test_load_weights_from_checkpoint_and_exported_out_dir(tmp_path):
    model, ema, *_ = trained_objects()
    save(tmp_path, 3, (model, ema, None, None))
    loaded = ToyDenoiser(hidden=8)
    # Before any export, out_dir resolves to its latest checkpoint.
    config = ckpt.load_weights(loaded, tmp_path, use_ema=True)
    assert_same_weights(loaded, ema)
    assert config["model_config"] == MODEL_CONFIG and config["step"] == 3

    newer, newer_ema, *_ = trained_objects(seed=2)
    ckpt.export_model(tmp_path, model=newer, ema=newer_ema, model_config=MODEL_CONFIG, train_config=TRAIN_CONFIG,
                      step=4)
    assert json.loads((tmp_path / "config.json").read_text())["step"] == 4
    ckpt.load_weights(loaded, tmp_path, use_ema=False)
    assert_same_weights(loaded, newer)
    ckpt.load_weights(loaded, tmp_path / "config.json", use_ema=True)
    assert_same_weights(loaded, newer_ema)
    assert ckpt.read_config(tmp_path)["step"] == 4
    assert ckpt.read_config(tmp_path / "checkpoints" / "step_00000003")["step"] == 3


def test_load_weights_falls_back_to_raw_weights_without_ema(tmp_path):
    model, *_ = trained_objects()
    ckpt.export_model(tmp_path, model=model, model_config=MODEL_CONFIG, train_config=TRAIN_CONFIG, step=1)
    loaded = ToyDenoiser(hidden=8)
    with pytest.warns(UserWarning, match="no ema.safetensors"):
        ckpt.load_weights(loaded, tmp_path, use_ema=True)
    assert_same_weights(loaded, model)
    # A sampling-only export whose model.safetensors says it holds the EMA weights loads without a warning.
    safetensors.torch.save_file(model.state_dict(), tmp_path / ckpt.MODEL_FILE, metadata={"weights": "ema"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ckpt.load_weights(ToyDenoiser(hidden=8), tmp_path, use_ema=True)


def test_clear_errors(tmp_path):
    objects = trained_objects()
    path = save(tmp_path, 1, objects)
    with pytest.raises(ValueError, match=r"shape mismatch: \['net.0.bias', 'net.0.weight'"):
        ckpt.load_weights(ToyDenoiser(hidden=16), path)
    with pytest.raises(ValueError, match=r"missing: \['extra.bias', 'extra.weight'\]"):
        ckpt.load_weights(torch.nn.ModuleDict({"extra": torch.nn.Linear(1, 1)}), path)
    with pytest.raises(FileNotFoundError, match="no model found"):
        ckpt.read_config(tmp_path / "checkpoints")
    with pytest.raises(FileNotFoundError, match="no such file"):
        ckpt.load_weights(ToyDenoiser(hidden=8), tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="not a checkpoint directory"):
        ckpt.load_checkpoint(tmp_path, ToyDenoiser(hidden=8))
    with pytest.raises(ValueError, match="keep must be >= 1"):
        ckpt.prune_checkpoints(tmp_path, keep=0)
