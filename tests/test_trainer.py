"""The shared trainer: config, data order, EMA, training, resume (in process and after SIGKILL), signals, NaN."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.trainer_toy import (
    MODEL_CONFIG,
    RingDataset,
    ToyDenoiser,
    denoising_loss,
    evaluation_loss,
    fixed_sigma_loss,
)

from noisecraft.training import NonFiniteLossError, TrainConfig, Trainer, latest_checkpoint, load_weights
from noisecraft.training.distributed import launch_env
from noisecraft.training.ema import ema_decay, make_ema, update_ema
from noisecraft.training.logging import read_jsonl, smooth
from noisecraft.training.lr_schedule import lr_factor, warmup_factor
from noisecraft.training.trainer import epoch_permutation, index_batches

REPO = Path(__file__).resolve().parents[1]
HELPERS = REPO / "tests" / "helpers"


def toy_config(**overrides) -> TrainConfig:
    settings = dict(steps=20, batch_size=8, lr=1e-2, warmup_steps=5, log_every=5, checkpoint_every=0,
                    ema_decay=0.9, seed=3)
    return TrainConfig(**{**settings, **overrides})


def toy_trainer(out_dir, config, *, loss_fn=denoising_loss, dropout=0.1, **kwargs) -> Trainer:
    torch.manual_seed(0)
    return Trainer(ToyDenoiser(hidden=MODEL_CONFIG["hidden"], dropout=dropout), loss_fn, RingDataset(), config, out_dir,
                   model_config=MODEL_CONFIG, progress=False, device="cpu", **kwargs)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


# --- pure pieces ----------------------------------------------------------------------------------------------------

def test_config_round_trip_and_validation():
    config = TrainConfig(steps=5, betas=[0.5, 0.9], grad_clip=None)
    assert config.betas == (0.5, 0.9)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match=r"unknown TrainConfig keys \['stpes'\]"):
        TrainConfig.from_dict({"stpes": 10})
    with pytest.raises(TypeError, match="TrainConfig.steps must be an int"):
        TrainConfig(steps=10.0)
    with pytest.raises(TypeError, match="TrainConfig.bf16 must be True or False"):
        TrainConfig(bf16=1)
    with pytest.raises(ValueError, match="TrainConfig.grad_accum must be >= 1"):
        TrainConfig(grad_accum=0)
    with pytest.raises(ValueError, match="TrainConfig.ema_decay must lie in"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="TrainConfig.betas"):
        TrainConfig(betas=(0.9,))
    with pytest.raises(ValueError, match="TrainConfig.lr_decay must be one of none, linear, cosine, got 'step'"):
        TrainConfig(lr_decay="step")
    with pytest.raises(ValueError, match=r"lr_decay_steps \(20\) exceeds steps \(10\)"):
        TrainConfig(steps=10, lr_decay="linear", lr_decay_steps=20)
    with pytest.raises(ValueError, match="lr_min_ratio must lie in"):
        TrainConfig(lr_min_ratio=1.5)


def test_warmup_and_ema_schedules():
    assert [warmup_factor(step, warmup_steps=4) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, warmup_steps=0) == 1.0
    assert ema_decay(0, decay=0.999) == pytest.approx(0.1)
    assert ema_decay(90, decay=0.999) == pytest.approx(91 / 100)
    assert ema_decay(10**6, decay=0.999) == 0.999
    assert ema_decay(0, decay=0.999, warmup=False) == 0.999


def test_lr_decay_schedules():
    def factors(**kwargs):
        return [lr_factor(step, **kwargs) for step in range(kwargs["steps"])]

    assert factors(steps=6, warmup_steps=2) == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]  # "none": warm-up only
    # linear over everything after warm-up: 1 at the first post-warm-up step, 0 at the last step
    assert factors(steps=6, warmup_steps=0, decay="linear") == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2, 0.0])
    assert factors(steps=6, warmup_steps=2, decay="linear") == pytest.approx([0.5, 1.0, 0.75, 0.5, 0.25, 0.0])
    # warmup-stable-decay: constant, then the last 3 steps go down to min_ratio
    assert factors(steps=8, warmup_steps=0, decay="linear", decay_steps=3, min_ratio=0.1) == pytest.approx(
        [1.0] * 6 + [0.55, 0.1])
    cosine = factors(steps=5, warmup_steps=0, decay="cosine")
    assert cosine == pytest.approx([1.0, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.5 * (1 - math.cos(math.pi / 4)),
                                    0.0])
    assert lr_factor(0, steps=1, warmup_steps=0, decay="cosine") == 1.0  # a one-step run does not divide by zero


def test_a_constant_run_cooled_down_on_resume_matches_the_planned_schedule(tmp_path):
    # Warmup-stable-decay: train at a constant rate, then resume with a decay over the new last steps.
    cooldown = dict(steps=20, lr_decay="linear", lr_decay_steps=10, lr_min_ratio=0.0)
    planned = toy_trainer(tmp_path / "planned", toy_config(**cooldown))
    planned.fit()
    constant = toy_trainer(tmp_path / "constant", toy_config(steps=10, checkpoint_every=5))
    constant.fit()
    cooled = toy_trainer(tmp_path / "constant", toy_config(**cooldown, checkpoint_every=5))
    result = cooled.fit(resume=True)
    assert result.step == 20
    assert_same_weights(cooled.model, planned.model)
    # the log's lr is the one its last step used: step 15 is 0-based step 14, 4/9 of the way from 10 to 19
    lrs = {record["step"]: record["lr"] for record in read_jsonl(result.log_path)}
    assert lrs[10] == pytest.approx(1e-2) and lrs[15] == pytest.approx(1e-2 * 5 / 9) and lrs[20] == 0.0
    never_cooled = toy_trainer(tmp_path / "straight", toy_config(steps=20))
    never_cooled.fit()
    assert not torch.equal(never_cooled.model.net[0].weight, cooled.model.net[0].weight)


def test_update_ema_is_the_exponential_moving_average():
    model = torch.nn.Linear(3, 2)
    ema = make_ema(model)
    old = ema.weight.clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    update_ema(ema, model, decay=0.75)
    torch.testing.assert_close(ema.weight, 0.75 * old + 0.25 * model.weight)
    assert not ema.weight.requires_grad and not ema.training


def test_data_order_is_a_resumable_stream_of_epoch_permutations():
    n = 10
    stream = index_batches(num_items=n, seed=4, start=0, batch_size=4)
    flat = [i for _ in range(5) for i in next(stream)]  # 20 indices = exactly two epochs
    for epoch in range(2):
        assert flat[epoch * n:(epoch + 1) * n] == epoch_permutation(n, seed=4, epoch=epoch).tolist()
        assert sorted(flat[epoch * n:(epoch + 1) * n]) == list(range(n))
    assert flat[:n] != flat[n:]  # a fresh order every epoch
    resumed = index_batches(num_items=n, seed=4, start=8, batch_size=4)
    assert next(resumed) + next(resumed) == flat[8:16]  # crosses the epoch boundary like the original stream
    rank_batches = [next(index_batches(num_items=n, seed=4, start=0, batch_size=2, rank=rank, world_size=2))
                    for rank in range(2)]
    assert rank_batches[0] + rank_batches[1] == flat[:4]


def test_smoothing_is_debiased():
    assert smooth([2.0, 2.0, 2.0], weight=0.9) == pytest.approx([2.0, 2.0, 2.0])
    assert smooth([0.0, 1.0], weight=0.5) == pytest.approx([0.0, 0.5 / 0.75])


def test_launch_env_parsing():
    assert launch_env({}) == (0, 1, 0)
    assert launch_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == (1, 2, 1)
    with pytest.raises(ValueError, match="LOCAL_RANK missing"):
        launch_env({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="inconsistent"):
        launch_env({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})


# --- training in process --------------------------------------------------------------------------------------------

def test_fit_trains_logs_and_exports(tmp_path):
    sampled = []

    def sample_fn(ema_model, step, out_dir):
        sampled.append(step)
        torch.randn(3)  # sampling under its own RNG fork: this must not move the training's global RNG
        return {"eval_loss": torch.tensor(evaluation_loss(ema_model))}

    config = toy_config(steps=40, checkpoint_every=10, sample_every=20)
    trainer = toy_trainer(tmp_path, config, sample_fn=sample_fn)
    before = evaluation_loss(trainer.model)
    result = trainer.fit()
    without_sampling = toy_trainer(tmp_path / "no_sampling", config)
    without_sampling.fit()
    assert_same_weights(trainer.model, without_sampling.model)  # dropout would see any draw the hook leaked
    assert (result.step, result.reason, result.interrupted) == (40, "completed", False)
    assert evaluation_loss(trainer.model) < 0.9 * before
    assert sampled == [20, 40]

    records = read_jsonl(result.log_path)
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert set(train[0]) >= {"loss", "lr", "grad_norm", "it_per_s", "wall_time", "epoch"}
    assert train[0]["lr"] == pytest.approx(1e-2)  # the lr of step 5 is the first after the 5-step warm-up
    samples = [r for r in records if r["kind"] == "sample"]
    assert [r["step"] for r in samples] == [20, 40] and isinstance(samples[0]["eval_loss"], float)
    assert (tmp_path / "loss.png").stat().st_size > 0
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == ["step_00000030", "step_00000040"]

    exported = ToyDenoiser(hidden=MODEL_CONFIG["hidden"])
    config = load_weights(exported, tmp_path, use_ema=True)
    assert_same_weights(exported, trainer.ema)
    assert config["model_config"] == MODEL_CONFIG and config["step"] == 40
    assert TrainConfig.from_dict(config["train_config"]) == trainer.config


def test_grad_accumulation_matches_a_larger_batch(tmp_path):
    # Half the batch twice, or the whole batch once: the same examples, the same mean gradient.
    large = toy_trainer(tmp_path / "large", toy_config(steps=6, batch_size=8, grad_accum=1), loss_fn=fixed_sigma_loss,
                        dropout=0.0)
    accumulated = toy_trainer(tmp_path / "accum", toy_config(steps=6, batch_size=4, grad_accum=2),
                              loss_fn=fixed_sigma_loss, dropout=0.0)
    initial = large.model.net[0].weight.clone()
    large.fit()
    accumulated.fit()
    assert not torch.equal(large.model.net[0].weight, initial)
    for a, b in zip(large.model.parameters(), accumulated.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_resume_in_process_is_bit_identical(tmp_path):
    straight = toy_trainer(tmp_path / "straight", toy_config(steps=20))
    straight.fit()
    first = toy_trainer(tmp_path / "resumed", toy_config(steps=10, checkpoint_every=5))
    assert first.fit().step == 10
    calls = 0

    def counting_loss(model, batch, generator):
        nonlocal calls
        calls += 1
        return denoising_loss(model, batch, generator)

    # `steps` may grow on resume
    second = toy_trainer(tmp_path / "resumed", toy_config(steps=20, checkpoint_every=5), loss_fn=counting_loss)
    result = second.fit(resume=True)
    assert (result.step, calls) == (20, 10)
    assert_same_weights(second.model, straight.model)
    assert_same_weights(second.ema, straight.ema)
    assert [r["step"] for r in read_jsonl(result.log_path)] == [5, 10, 15, 20]


def test_resume_refusals_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint .*; start without --resume \(Python: resume=False\)"):
        toy_trainer(tmp_path, toy_config(steps=2)).fit(resume=True)
    toy_trainer(tmp_path, toy_config(steps=2)).fit()
    with pytest.raises(FileExistsError,
                       match=r"holds checkpoints .*: continue it with --resume \(Python: resume=True\) or choose a "
                             "new --out"):
        toy_trainer(tmp_path, toy_config(steps=2)).fit()
    with pytest.raises(ValueError, match=r"TrainConfig differs in \['lr'\]"):
        toy_trainer(tmp_path, toy_config(steps=4, lr=0.5)).fit(resume=True)
    wider = Trainer(ToyDenoiser(hidden=16), denoising_loss, RingDataset(), toy_config(steps=4), tmp_path,
                    model_config={**MODEL_CONFIG, "hidden": 16}, progress=False, device="cpu")
    with pytest.raises(ValueError, match=r"model_config differs in \['hidden'\]"):
        wider.fit(resume=True)


def test_sigint_stops_after_the_step_with_a_resumable_checkpoint(tmp_path):
    calls = 0

    def interrupting_loss(model, batch, generator):
        nonlocal calls
        calls += 1
        if calls == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return denoising_loss(model, batch, generator)

    handler_before = signal.getsignal(signal.SIGINT)
    result = toy_trainer(tmp_path / "run", toy_config(steps=20), loss_fn=interrupting_loss).fit()
    assert signal.getsignal(signal.SIGINT) is handler_before
    assert (result.step, result.interrupted, result.reason) == (7, True, "signal:SIGINT")
    assert latest_checkpoint(tmp_path / "run").name == "step_00000007"

    resumed = toy_trainer(tmp_path / "run", toy_config(steps=20))
    resumed.fit(resume=True)
    straight = toy_trainer(tmp_path / "straight", toy_config(steps=20))
    straight.fit()
    assert_same_weights(resumed.model, straight.model)


def test_time_budget_stops_with_a_checkpoint(tmp_path):
    result = toy_trainer(tmp_path, toy_config(steps=1000, max_minutes=1e-9)).fit()
    assert (result.step, result.reason, result.interrupted) == (1, "time_limit", False)
    assert latest_checkpoint(tmp_path).name == "step_00000001"


def test_nan_loss_raises_naming_the_step_and_saves_nothing(tmp_path):
    calls = 0

    def exploding_loss(model, batch, generator):
        nonlocal calls
        calls += 1
        losses = denoising_loss(model, batch, generator)
        return losses * math.nan if calls == 4 else losses

    trainer = toy_trainer(tmp_path, toy_config(steps=10, checkpoint_every=2), loss_fn=exploding_loss)
    with pytest.raises(NonFiniteLossError, match="at step 4"):
        trainer.fit()
    assert latest_checkpoint(tmp_path).name == "step_00000002"
    assert not (tmp_path / "model.safetensors").exists()
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_bad_loss_shape_and_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match=r"per-example losses of shape \[B\], got \(\)"):
        toy_trainer(tmp_path / "a", toy_config(steps=2),
                    loss_fn=lambda model, batch, generator: denoising_loss(model, batch, generator).mean()).fit()
    with pytest.raises(TypeError, match="model_config must be JSON-serialisable"):
        Trainer(ToyDenoiser(), denoising_loss, RingDataset(), toy_config(), tmp_path, model_config={"x": object()})
    with pytest.raises(TypeError, match="dataset must be map-style"):
        Trainer(ToyDenoiser(), denoising_loss, iter([]), toy_config(), tmp_path, model_config={})
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        Trainer(ToyDenoiser(), denoising_loss, RingDataset(), {"steps": 1}, tmp_path, model_config={})


def test_bf16_and_dict_batches(tmp_path):
    class DictRing(RingDataset):
        def __getitem__(self, index):
            return {"x0": self.points[index], "label": index % 2}

    def dict_loss(model, batch, generator):
        assert batch["label"].dtype == torch.int64 and batch["x0"].shape == (8, 2)
        return denoising_loss(model, batch["x0"], generator)

    torch.manual_seed(0)
    trainer = Trainer(ToyDenoiser(), dict_loss, DictRing(), toy_config(steps=6, bf16=True), tmp_path,
                      model_config=MODEL_CONFIG, progress=False, device="cpu")
    result = trainer.fit()
    assert result.step == 6 and math.isfinite(result.loss)
    assert trainer.ema.net[0].weight.dtype == torch.float32


def test_cache_on_device_gives_the_same_batches_and_weights(tmp_path):
    class CaptionedRing(RingDataset):
        def __getitem__(self, index):
            return {"x0": self.points[index], "caption": f"point {index}"}

    seen = []

    def caption_loss(model, batch, generator):
        seen.append(list(batch["caption"]))
        return denoising_loss(model, batch["x0"], generator)

    runs = {}
    for cached in (False, True):
        seen.clear()
        torch.manual_seed(0)
        trainer = Trainer(ToyDenoiser(), caption_loss, CaptionedRing(), toy_config(steps=7, cache_on_device=cached),
                          tmp_path / str(cached), model_config=MODEL_CONFIG, progress=False, device="cpu")
        trainer.fit()
        runs[cached] = (trainer, [list(batch) for batch in seen])
    assert runs[True][1] == runs[False][1]  # same captions in the same order, across the epoch boundary (7 x 8 > 40)
    assert_same_weights(runs[True][0].model, runs[False][0].model)
    cached = [r for r in read_jsonl(tmp_path / "True" / "log.jsonl") if r["kind"] == "data_cache"]
    assert len(cached) == 1 and cached[0]["examples"] == 40 and cached[0]["bytes"] == 40 * 2 * 4
    # cache_on_device may change on resume: it changes speed only.
    config = toy_config(steps=9, cache_on_device=False)
    resumed = Trainer(ToyDenoiser(), caption_loss, CaptionedRing(), config, tmp_path / "True",
                      model_config=MODEL_CONFIG, progress=False, device="cpu")
    assert resumed.fit(resume=True).step == 9


def test_cache_on_device_refuses_batches_it_cannot_index(tmp_path):
    trainer = toy_trainer(tmp_path, toy_config(steps=2, cache_on_device=True))  # RingDataset: bare tensors
    with pytest.raises(TypeError, match="cache_on_device needs batches that are dicts"):
        trainer.fit()


# --- separate processes: SIGKILL and SIGTERM ------------------------------------------------------------------------

def launch(out_dir: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(HELPERS / "train_toy.py"), "--out", str(out_dir), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, out_dir: Path, *, timeout: float = 60) -> dict:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return json.loads((out_dir / "result_rank0.json").read_text())


def wait_for_checkpoint(out_dir: Path, process: subprocess.Popen, *, timeout: float = 60) -> int:
    """Poll ``checkpoints/latest`` until the running process has written a checkpoint; returns its step."""
    deadline = time.monotonic() + timeout
    while (checkpoint := latest_checkpoint(out_dir)) is None:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    return int(checkpoint.name.removeprefix("step_"))


STEPS = ["--steps", "30"]
SLOW = ["--checkpoint-every", "10", "--slow-after", "12", "--delay", "0.3"]  # steps 13.. take 0.3 s each


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    straight = launch(tmp_path / "straight", *STEPS)  # runs alongside, for the reference weights
    killed = launch(tmp_path / "run", *STEPS, *SLOW)
    wait_for_checkpoint(tmp_path / "run", killed)
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=30)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "run" / "result_rank0.json").exists()  # it really died mid-training
    saved_step = int(latest_checkpoint(tmp_path / "run").name.removeprefix("step_"))
    assert saved_step in (10, 20)

    resumed = finish(launch(tmp_path / "run", *STEPS, "--checkpoint-every", "10", "--resume"), tmp_path / "run")
    reference = finish(straight, tmp_path / "straight")
    # It continued from the checkpoint, not from scratch.
    assert (resumed["step"], resumed["loss_calls"]) == (30, 30 - saved_step)
    assert resumed["model"] == reference["model"]
    assert resumed["ema"] == reference["ema"]
    assert resumed["final_eval_loss"] < reference["initial_eval_loss"]


def test_sigterm_saves_a_checkpoint_and_exits_zero(tmp_path):
    process = launch(tmp_path, *STEPS, *SLOW)
    seen_step = wait_for_checkpoint(tmp_path, process)
    process.send_signal(signal.SIGTERM)
    result = finish(process, tmp_path)
    assert result["interrupted"] and result["reason"] == "signal:SIGTERM"
    assert seen_step < result["step"] < 30
    assert latest_checkpoint(tmp_path).name == f"step_{result['step']:08d}"
    assert json.loads((tmp_path / "config.json").read_text())["step"] == result["step"]
    assert np.isfinite(result["loss"])


def test_compile_trains_like_eager_and_saves_plain_weights(tmp_path):
    # torch.compile changes rounding only: the same run, compiled or not, ends within float tolerance, the
    # checkpoint holds the plain module's keys, and a resume may switch compilation on or off.
    runs, wrappers = {}, set()

    def recording_loss(model, batch, generator):
        wrappers.add(type(model).__name__)
        return fixed_sigma_loss(model, batch, generator)

    for compiled in (False, True):
        wrappers.clear()
        trainer = toy_trainer(tmp_path / str(compiled), toy_config(steps=6, checkpoint_every=3, compile=compiled),
                              loss_fn=recording_loss, dropout=0.0)
        trainer.fit()
        runs[compiled] = trainer
        assert wrappers == ({"OptimizedModule"} if compiled else {"ToyDenoiser"})
    for a, b in zip(runs[False].model.parameters(), runs[True].model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    saved = ToyDenoiser(dropout=0.0)
    load_weights(saved, tmp_path / "True", use_ema=False)  # strict: fails on "_orig_mod." keys
    assert_same_weights(saved, runs[True].model)
    resumed = toy_trainer(tmp_path / "True", toy_config(steps=8, checkpoint_every=3, compile=False),
                          loss_fn=fixed_sigma_loss, dropout=0.0)
    assert resumed.fit(resume=True).step == 8
