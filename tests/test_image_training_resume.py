"""Resuming an image run: the run's stored settings are reused; only what may change on resume can be changed."""

import json
import re

import pytest
from test_image_pipeline import run_cli

from noisecraft.images.training import CLI_IMAGE_OPTIONS, CLI_TRAIN_OPTIONS, ImageTrainConfig, train_images

FIRST = ("--data", "digits", "--preset", "tiny", "--resolution", 8, "--steps", 2, "--batch-size", 4,
         "--checkpoint-every", 0, "--sample-every", 0)


@pytest.fixture
def run(tmp_path):
    """A tiny digits run of two steps, trained through the CLI."""
    out = tmp_path / "run"
    result = run_cli("train", "--out", out, *FIRST)
    assert result.returncode == 0, result.stderr
    return out


def stored(run):
    return json.loads((run / "config.json").read_text())


def test_cli_resume_needs_only_the_run_folder_and_the_changes(run):
    result = run_cli("train", "--out", run, "--resume", "--steps", 4)
    assert result.returncode == 0, result.stderr
    assert "trained to step 4" in result.stdout
    saved = stored(run)
    assert saved["step"] == 4 and saved["train_config"]["steps"] == 4 and saved["train_config"]["batch_size"] == 4
    assert saved["model_config"]["training"]["preset"] == "tiny" and saved["model_config"]["shape"] == [1, 8, 8]


def test_options_repeated_unchanged_on_resume_are_fine(run):
    result = run_cli("train", "--out", run, "--resume", "--data", "digits", "--preset", "tiny", "--resolution", 8,
                     "--batch-size", 4, "--steps", 3)
    assert result.returncode == 0, result.stderr
    assert stored(run)["step"] == 3


@pytest.mark.parametrize("options, message", [
    (("--preset", "small"), "--preset small differs from the run's preset tiny; a resumed run keeps its network"),
    (("--resolution", 16), "--resolution 16 differs from the run's resolution 8"),
    (("--lr", 0.5), "--lr 0.5 differs from the run's lr 0.001"),
    (("--bf16",), "--bf16 differs from the run's --no-bf16"),
    (("--unconditional",), "--unconditional differs from the run's --no-unconditional"),
])
def test_cli_resume_refuses_changes_it_cannot_make_naming_the_option(run, options, message):
    result = run_cli("train", "--out", run, "--resume", *options)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_api_resume_with_only_out_dir_and_allowed_changes(run):
    result = train_images({"out_dir": str(run), "train": {"steps": 3}}, resume=True, progress=False)
    assert result.step == 3 and stored(run)["model_config"]["training"]["preset"] == "tiny"
    result = train_images(ImageTrainConfig(out_dir=str(run), train={"steps": 4}), resume=True, progress=False)
    assert result.step == 4
    with pytest.raises(ValueError, match=re.escape("--preset base differs from the run's preset tiny")):
        train_images({"out_dir": str(run), "preset": "base"}, resume=True, progress=False)


def test_a_new_run_in_a_used_folder_says_how_to_continue_it(run):
    result = run_cli("train", "--out", run, *FIRST)
    assert result.returncode == 2
    assert "continue it with --resume (Python: resume=True) or choose a new --out" in result.stderr


def test_resume_without_a_checkpoint_says_start_without_resume(tmp_path):
    result = run_cli("train", "--out", tmp_path / "empty", "--resume", "--steps", 2)
    assert result.returncode == 2
    assert "start without --resume (Python: resume=False)" in result.stderr


def test_every_option_named_in_messages_exists():
    help_text = run_cli("train", "--help").stdout
    for option in {**CLI_IMAGE_OPTIONS, **CLI_TRAIN_OPTIONS}.values():
        assert option in help_text


def test_a_fine_tuned_run_resumes_from_its_checkpoint_not_its_source(tmp_path):
    from noisecraft.images.training import make_tiny_model

    source = make_tiny_model(tmp_path / "source")
    out = tmp_path / "tuned"
    train_images({"data": "digits", "resolution": 8, "init_from": str(source), "out_dir": str(out),
                  "train": {"steps": 1, "batch_size": 4, "checkpoint_every": 0, "sample_every": 0}}, progress=False)
    assert train_images({"out_dir": str(out), "train": {"steps": 2}}, resume=True, progress=False).step == 2
    assert stored(out)["model_config"]["training"]["init_from"] == str(source)
