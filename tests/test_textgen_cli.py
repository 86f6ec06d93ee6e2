"""`noisecraft text fit | sample | evaluate` end to end on a tiny corpus (tiny network, a few steps).

The commands run through the text sub-app (what `noisecraft text ...` mounts), which spares each test process the
import of every other modality's commands; `main` prints the same errors as one line (tests/test_registry.py)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from noisecraft.textgen.cli import app
from noisecraft.training.checkpoint import read_config

POEM = ["Twinkle, twinkle, little star,\nHow I wonder what you are!\n" * 4,
        "Up above the world so high,\nLike a diamond in the sky.\n" * 4]
FIT = ["--preset", "tiny", "--steps", "2", "--length", "32", "--batch-size", "4"]


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _error(*args: str) -> str:
    """The message of the user error a command raises (the main CLI prints it as one `error: ...` line)."""
    result = CliRunner().invoke(app, list(args))
    assert isinstance(result.exception, (ValueError, FileNotFoundError, FileExistsError)), result.output
    message = str(result.exception)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    for index, text in enumerate(POEM):
        (folder / f"part{index}.txt").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def model(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "poem"
    assert "trained 2 steps" in _run("fit", str(corpus), "-o", str(out), *FIT)
    return out


def test_fit_writes_tokenizer_and_model_config(model, corpus):
    config = read_config(model)
    spec = config["model_config"]
    assert spec["kind"] == "text" and config["step"] == 2 and (model / "tokenizer.json").is_file()
    assert spec["extra"]["tokenizer"] == "tokenizer.json" and spec["extra"]["corpus"]["corpus"] == str(corpus)
    assert spec["extra"]["window"] == {"length": 32, "stride": 8} and spec["max_length"] == 32
    assert spec["mask_id"] == spec["vocab_size"] and spec["net"]["vocab_size"] == spec["vocab_size"]


def test_sample_prefix_to_jsonl_and_infill_printed(model, tmp_path):
    out = tmp_path / "texts.jsonl"
    _run("sample", str(model), "-n", "2", "--prefix", "Twinkle", "--steps", "3", "--seed", "5", "-o", str(out))
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(lines) == 2 and all(line["text"].startswith("Twinkle") for line in lines)
    assert lines[0]["parameters"]["seed"] == 5 and lines[0]["parameters"]["prefix"] == "Twinkle"
    again = tmp_path / "again.jsonl"
    _run("sample", str(model), "-n", "2", "--prefix", "Twinkle", "--steps", "3", "--seed", "5", "-o", str(again))
    assert again.read_bytes() == out.read_bytes()  # same seed, same texts
    printed = _run("sample", str(model), "-n", "2", "--infill", "How I [____] what", "--steps", "3")
    assert printed.count("--- text ") == 2 and printed.count("How I ") == 2 and printed.count(" what") == 2


def test_evaluate_reports_bits_per_char(model, corpus, tmp_path):
    report_path = tmp_path / "eval.json"
    output = _run("evaluate", str(model), str(corpus / "part1.txt"), "--samples", "2", "--speed-n", "1",
                  "-o", str(report_path))
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["bits_per_char"] > 0 and report["stderr_bits_per_char"] >= 0 and report["mc_samples"] == 2
    assert report["bits_per_char"] == pytest.approx(report["bits_per_token"])  # char model: one token a character
    assert report["sampling"]["tokens_per_second"] > 0 and '"bits_per_char"' in output


def test_user_errors_are_one_line(model, corpus, tmp_path):
    # no held-out text for a model of another corpus
    assert "pass held-out text" in _error("evaluate", str(model))
    # the run exists: continue it with --resume or choose another folder
    assert "--resume" in _error("fit", str(corpus), "-o", str(model), *FIT)
    assert "'Z'" in _error("sample", str(model), "--prefix", "Zebra")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\xfe")
    assert "bad.txt is not UTF-8 text: byte offset 3" in _error("fit", str(bad), "-o", str(tmp_path / "m"), *FIT)
    assert "shorter than one window of 500 tokens" in _error("fit", str(corpus / "part0.txt"), "-o",
                                                             str(tmp_path / "m2"), "--length", "500", "--steps",
                                                             "1", "--preset", "tiny")
    assert not (tmp_path / "m2").exists()  # nothing written for a refused corpus


def test_bpe_fit_resume_and_sample(corpus, tmp_path):
    out = tmp_path / "bpe"
    _run("fit", str(corpus), "-o", str(out), *FIT, "--tokenizer", "bpe", "--bpe-vocab-size", "300",
         "--length", "16")
    assert "trained 3 steps" in _run("fit", str(corpus), "-o", str(out), *FIT, "--tokenizer", "bpe",
                                     "--bpe-vocab-size", "300", "--length", "16", "--steps", "3", "--resume")
    printed = _run("sample", str(out), "-n", "1", "--infill", "Twinkle, [__] star", "--steps", "2")
    assert "Twinkle, " in printed and " star" in printed


def test_default_corpus_fit_and_evaluate_on_the_held_out_plays(tmp_path):
    out = tmp_path / "shakespeare"
    _run("fit", "-o", str(out), "--preset", "tiny", "--steps", "1", "--length", "16", "--batch-size", "2")
    corpus = read_config(out)["model_config"]["extra"]["corpus"]
    assert corpus["corpus"] == "shakespeare" and corpus["held_out"] == ["coriolanus", "measure_for_measure"]
    assert corpus["training_documents"] == 35
    _run("evaluate", str(out), "--max-windows", "4", "--samples", "1", "--speed-n", "0")
    report = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert "coriolanus, measure_for_measure" in report["heldout"] and report["windows"] == 4
    assert report["stderr_mc_bits_per_char"] is None and report["unknown_characters"] == 0  # one MC sample
