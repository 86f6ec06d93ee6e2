"""The points model shipped in noisecraft/assets/points_shapes: small, loads, generates deterministically, writes
its files, and makes what it is asked for."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import noisecraft
from noisecraft.points.cli import DEFAULT_MODEL, app
from noisecraft.points.evaluate import judge
from noisecraft.points.io import read_ply


@pytest.fixture(scope="module")
def pipeline():
    return noisecraft.load(DEFAULT_MODEL)


def test_shipped_model_is_small_and_self_contained():
    files = {f.name: f.stat().st_size for f in DEFAULT_MODEL.iterdir()}
    assert set(files) == {"config.json", "model.safetensors"} and sum(files.values()) <= 5 * 2**20
    spec = json.loads((DEFAULT_MODEL / "config.json").read_text())["model_config"]
    assert spec["kind"] == "points" and spec["text_encoder"]["name"] == "minilm" and spec["points"] == 512
    assert spec["world"]["held_out"] == ["cone:tall", "capsule:wide", "sphere:flat"]


def test_generation_is_deterministic_and_writes_its_files(pipeline, tmp_path):
    request = {"prompt": "a thin torus", "n": 1, "steps": 2, "points": 64}
    a = pipeline.generate(request, seed=3)
    b = pipeline.generate(request, seed=3)
    assert a.items.shape == (1, 64, 3) and np.array_equal(a.items, b.items)
    files = {f.name for f in pipeline.save_outputs(a, tmp_path)}
    assert {"cloud_0000.ply", "views.png", "turntable.gif", "generation.json"} <= files
    points, _, comment = read_ply(tmp_path / "cloud_0000.ply")
    assert np.array_equal(points, a.items[0]) and comment["seed"] == 3 and comment["prompt"] == "a thin torus"


def test_shipped_model_makes_a_simple_prompt(pipeline):
    # A regression check at the default settings; accuracy itself is measured by `noisecraft eval points`
    # (benchmarks/RESULTS.md).
    clouds, _ = pipeline.sample(2, prompt="a thin torus", steps=16, guidance=2.0, seed=0)
    assert sum(judge(cloud, "a thin torus")[0] for cloud in clouds) >= 1


def test_generate_command_uses_the_shipped_model_by_default(tmp_path):
    result = CliRunner().invoke(app, ["generate", "a thin torus", "--steps", "2", "--batch", "1", "--points", "64",
                                      "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert {"cloud_0000.ply", "views.png", "turntable.gif"} <= {f.name for f in tmp_path.iterdir()}
