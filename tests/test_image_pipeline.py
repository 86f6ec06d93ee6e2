"""End-to-end image modality: tiny training run, loading, deterministic sampling, PNG metadata, CLI and bad input."""

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from noisecraft.api import load, train
from noisecraft.cli import main
from noisecraft.images.io import read_parameters

TINY = {"data": "digits", "resolution": 8, "preset": "tiny", "sample_steps": 4,
        "train": {"steps": 6, "batch_size": 8, "warmup_steps": 2, "checkpoint_every": 3, "log_every": 2,
                  "sample_every": 0}}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "digits"
    result = train(TINY | {"out_dir": str(out)}, progress=False)
    assert result.step == 6
    return out


def test_run_folder_is_a_loadable_model(tiny_run):
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["model_config"]["kind"] == "image"
    assert config["model_config"]["class_names"] == [str(d) for d in range(10)]
    assert (tiny_run / "loss.png").is_file() and (tiny_run / "log.jsonl").is_file()
    pipeline = load(tiny_run)
    assert pipeline.spec.resolution == 8 and pipeline.spec.channels == 1


def test_digits_splits_train_through_the_api():
    from noisecraft.images.training import ImageTrainConfig, build_dataset

    assert len(build_dataset(ImageTrainConfig(data="digits:train"))) < len(build_dataset(ImageTrainConfig()))
    assert build_dataset(ImageTrainConfig(data="digits:test"))[0]["image"].shape == (1, 16, 16)


def test_sampling_is_deterministic_and_independent_of_batch_size(tiny_run):
    pipeline = load(tiny_run)
    a, params = pipeline.sample(3, labels=[1, 2, 3], steps=4, seed=11)
    b, _ = pipeline.sample(3, labels=[1, 2, 3], steps=4, seed=11)
    assert torch.equal(a, b)
    assert a.shape == (3, 1, 8, 8) and a.abs().max() <= 1
    # Image i uses seed + i: the first image of a 1-image batch is the first image of a 3-image batch.
    first, _ = pipeline.sample(1, labels=[1], steps=4, seed=11)
    torch.testing.assert_close(first[0], a[0], atol=1e-5, rtol=0)
    assert params["seed"] == 11 and params["sampler"] == "heun" and params["labels"] == [1, 2, 3]


def test_guided_sampling_doubles_nfe_and_accepts_class_names(tiny_run):
    pipeline = load(tiny_run)
    _, plain = pipeline.sample(2, labels=["4", "5"], steps=3, sampler="euler")
    _, guided = pipeline.sample(2, labels=["4", "5"], steps=3, sampler="euler", guidance=3.0)
    assert guided["nfe"] == 2 * plain["nfe"]
    with pytest.raises(ValueError, match="unknown class"):
        pipeline.sample(1, labels=["cat"], steps=2)
    with pytest.raises(ValueError, match="out of range"):
        pipeline.sample(1, labels=[10], steps=2)


def test_saved_pngs_carry_parameters(tiny_run, tmp_path):
    pipeline = load(tiny_run)
    images, params = pipeline.sample(2, labels=[0, 1], steps=2, seed=5)
    grid, files = pipeline.save(images, params, tmp_path)
    meta = read_parameters(files[1])
    assert meta["seed"] == 6 and meta["label"] == "1" and meta["steps"] == 2
    assert "Seed: 6" in Image.open(files[1]).text["parameters"]
    assert grid.is_file() and json.loads(files[0].with_suffix(".json").read_text())["seed"] == 5
    # A class-conditional model sampled without labels uses the "no label" class: recorded as label None.
    images, params = pipeline.sample(1, steps=2, seed=5)
    _, files = pipeline.save(images, params, tmp_path / "unlabelled")
    assert read_parameters(files[0])["label"] is None


def run_cli(*args):
    """The real console entry point, in-process (a subprocess would pay torch's import each time)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code or 0
    return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


def test_console_script_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "noisecraft.cli", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "demo" in result.stdout


def test_cli_sample_and_info(tiny_run, tmp_path):
    result = run_cli("sample", tiny_run, "-n", 2, "--label", "all", "--steps", 2, "--out", tmp_path / "s")
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "s").glob("sample_0*.png"))) == 20
    result = run_cli("sample", tiny_run, "-n", 1, "--steps", 2, "--out", tmp_path / "unlabelled")
    assert result.returncode == 0, result.stderr
    info = run_cli("info", tiny_run)
    assert info.returncode == 0 and "kind: image" in info.stdout


def test_cli_help_explains_every_option():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    for option in ("--data", "--resolution", "--steps", "--resume", "--skip-bad", "--bf16", "--max-minutes",
                   "--num-workers", "--cache-on-device", "--compile", "--lr-decay", "--lr-decay-steps",
                   "--lr-min-ratio"):
        assert option in result.stdout


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "mixed"])
def test_cli_bad_data_gives_one_line_error(tmp_path, case):
    folder = tmp_path / "images"
    if case != "missing":
        folder.mkdir()
    if case == "corrupt":
        Image.new("RGB", (8, 8)).save(folder / "ok.png")
        (folder / "bad.png").write_bytes(b"not a png at all")
    if case == "mixed":
        Image.new("RGB", (8, 8)).save(folder / "a.png")
        Image.new("RGB", (12, 12)).save(folder / "b.png")
    result = run_cli("train", "--data", folder, "--out", tmp_path / "run", "--steps", 1, "--preset", "tiny")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    expected = {"missing": "no such directory", "empty": "no images found", "corrupt": "--skip-bad",
                "mixed": "--resolution"}[case]
    assert expected in result.stderr


def test_cli_skip_bad_trains_on_the_readable_images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / f"ok{i}.png")
    (folder / "bad.png").write_bytes(b"garbage")
    result = run_cli("train", "--data", folder, "--out", tmp_path / "run", "--steps", 2, "--batch-size", 2,
                     "--preset", "tiny", "--skip-bad", "--sample-every", 0, "--cache-on-device", "--lr-decay", "cosine")
    assert result.returncode == 0, result.stderr
    assert load(tmp_path / "run").spec.channels == 3
    train_config = json.loads((tmp_path / "run" / "config.json").read_text())["train_config"]
    assert (train_config["lr_decay"], train_config["cache_on_device"]) == ("cosine", True)


def test_cli_train_under_torchrun_two_processes(tmp_path):
    """`torchrun -m noisecraft.cli train` (gloo on CPU): both ranks train, rank 0 writes one loadable model."""
    import os
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
         "-m", "noisecraft.cli", "train", "--data", "digits", "--preset", "tiny", "--resolution", "8", "--steps", "4",
         "--batch-size", "4", "--out", str(out), "--checkpoint-every", "2", "--sample-every", "0"],
        capture_output=True, text=True, timeout=240, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("trained to step 4") == 1  # rank 0 only
    assert json.loads((out / "config.json").read_text())["step"] == 4
    assert load(out).spec.resolution == 8
