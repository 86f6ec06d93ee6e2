"""Text generation pipeline: templates, prefixes and infilling keep the given text, bad requests are refused with
a message naming the problem, the same seed gives the same texts, outputs carry their parameters."""

from __future__ import annotations

import json
import math
import re

import pytest

import noisecraft
from noisecraft.protocol import ParameterError
from noisecraft.textgen.evaluate import _combine
from noisecraft.textgen.pipeline import TextPipeline, parse_template
from noisecraft.textgen.training import TINY_TEXT, make_tiny_model


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> TextPipeline:
    return noisecraft.load(make_tiny_model(tmp_path_factory.mktemp("text") / "model"))


def test_template_syntax():
    assert parse_template("To be, or [___] to be") == [("text", "To be, or "), ("gap", 3), ("text", " to be")]
    assert parse_template("[Exit.] [_][__]") == [("text", "[Exit.] "), ("gap", 1), ("gap", 2)]
    assert parse_template(r"a \[__] b [_]") == [("text", "a [__] b "), ("gap", 1)]
    assert parse_template("no gap [] here") == [("text", "no gap [] here")]


def test_prefix_and_infill_keep_the_given_text(pipeline):
    prefixed = pipeline.generate({"n": 2, "prefix": "Twinkle, ", "steps": 4, "length": 20}, seed=0)
    assert all(text.startswith("Twinkle, ") for text in prefixed.items)
    assert prefixed.parameters["prefix"] == "Twinkle, " and prefixed.parameters["length"] == 20
    template = "How I [_____] what you [___]!"
    filled = pipeline.generate({"n": 3, "infill": template, "steps": 4}, seed=0)
    for text in filled.items:  # one character per _ (none where the model drew <eos> or <pad>)
        assert re.fullmatch(r"How I (.{0,5}) what you (.{0,3})!", text, flags=re.DOTALL), text
    assert filled.parameters["length"] == len("How I ") + 5 + len(" what you ") + 3 + 1
    longer = pipeline.generate({"n": 1, "infill": "How [__]", "length": 12, "steps": 4}, seed=0)
    assert longer.items[0].startswith("How ")  # the template, then a continuation up to 12 characters


def test_same_seed_same_texts_and_saved_records(pipeline, tmp_path):
    request = {"n": 3, "steps": 5, "length": 24, "temperature": 0.8, "top_p": 0.9, "strategy": "confidence"}
    first, again = pipeline.generate(request, seed=3), pipeline.generate(request, seed=3)
    assert first.items == again.items and first.parameters == again.parameters
    assert pipeline.generate(request, seed=4).items != first.items
    record = first.parameters
    assert {"seed", "model", "noisecraft", "tokenizer", "steps", "strategy", "temperature", "top_p", "n",
            "length", "prefix", "infill"} <= set(record) and "seconds" not in record
    [path] = pipeline.save_outputs(first, tmp_path)
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert path.name == "texts.jsonl" and [line["index"] for line in lines] == [0, 1, 2]
    assert [line["text"] for line in lines] == first.items and lines[0]["parameters"]["seed"] == 3


@pytest.mark.parametrize("request_, match", [
    ({"prefix": "Twinkle" * 10, "length": 16}, r"'prefix'.*70 tokens long, not shorter than the text length 16"),
    ({"infill": "How I wonder"}, r"'infill'.*has no gap"),
    ({"infill": "[____]" * 10}, r"'infill'.*40 tokens long; the model's window is 32"),
    ({"infill": "How [__]", "length": 5}, r"'infill'.*6 tokens long but length is 5"),
    ({"prefix": "Zebra ünïcodE"}, r"'prefix'.*5 character\(s\).*'Z', 'ü', 'ï', 'c', 'E'"),
    ({"infill": "Quack [__]"}, r"'infill'.*2 character\(s\).*'Q', 'c'"),
    ({"prefix": "a", "infill": "[_]"}, r"'infill'.*either a prefix or an infill"),
    ({"n": 0}, r"'n'.*>= 1"),
    ({"steps": -3}, r"'steps'.*>= 1"),
    ({"length": 33}, r"'length'.*<= 32"),
    ({"strategy": "greedy"}, r"'strategy'.*ancestral, random, confidence"),
    ({"top_p": 0.0}, r"'top_p'.*> 0"),
    ({"temperature": 6}, r"'temperature'.*<= 5"),
])
def test_bad_requests_are_refused_in_one_line(pipeline, request_, match):
    with pytest.raises(ParameterError, match=match) as error:
        pipeline.generate({"steps": 2} | request_)
    assert "\n" not in str(error.value)


def test_the_tiny_model_knows_its_characters(pipeline):
    assert set(pipeline.tokenizer.chars) == set(TINY_TEXT)
    assert pipeline.describe()["modality"] == "text"


def _nelbo_like(per_sequence: list[float], window: int) -> dict:
    """nelbo's bits and standard error for sequences of `window` tokens with these per-sequence estimates."""
    count, tokens = len(per_sequence), len(per_sequence) * window
    rate = sum(per_sequence) / tokens
    residual = sum((s - rate * window) ** 2 for s in per_sequence)
    stderr = math.sqrt(count / (count - 1) * residual) / tokens if count > 1 else 0.3
    return {"bits_per_token": rate, "stderr_bits_per_token": stderr, "stderr_mc_bits_per_token": 0.1 / tokens,
            "tokens": tokens, "sequences": count}


def test_chunked_nelbo_results_combine_exactly():
    values = [30.0, 41.5, 28.25, 35.0, 50.0, 33.0, 29.5]
    whole = _nelbo_like(values, 16)
    combined = _combine([_nelbo_like(values[:3], 16), _nelbo_like(values[3:6], 16), _nelbo_like(values[6:], 16)], 16)
    assert combined["bits_per_token"] == pytest.approx(whole["bits_per_token"])
    assert combined["stderr_bits_per_token"] == pytest.approx(whole["stderr_bits_per_token"])
    assert combined["tokens"] == whole["tokens"] and combined["sequences"] == len(values)
