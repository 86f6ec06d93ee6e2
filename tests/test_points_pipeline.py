"""The points pipeline (noisecraft.points.pipeline) with a tiny model: outputs, determinism, bad input, CLI."""

import hashlib
import json

import numpy as np
import pytest

import noisecraft
from noisecraft.points.io import alpha_shape, read_ply
from noisecraft.points.training import make_tiny_model, train_points
from noisecraft.points.world import make_sample
from noisecraft.protocol import ParameterError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("points") / "model")


def _hashes(files):
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_outputs_carry_parameters_and_the_same_seed_gives_the_same_ply_bytes(tiny, tmp_path):
    pipeline = noisecraft.load(tiny)
    request = {"prompt": "a tall cylinder", "n": 2, "steps": 2, "mesh": True}
    files = pipeline.save_outputs(pipeline.generate(request, seed=5), tmp_path / "a")
    again = pipeline.save_outputs(pipeline.generate(request, seed=5), tmp_path / "b")
    assert _hashes(files) == _hashes(again)
    names = {f.name for f in files}
    assert {"cloud_0000.ply", "cloud_0001.ply", "mesh_0000.glb", "views.png", "turntable.gif",
            "generation.json"} <= names
    points, normals, comment = read_ply(tmp_path / "a" / "cloud_0001.ply")
    assert points.shape == (64, 3) and normals is None
    assert comment["seed"] == 6 and comment["prompt"] == "a tall cylinder"
    sidecar = json.loads((tmp_path / "a" / "generation.json").read_text())
    assert sidecar["parameters"]["seed"] == 5 and sidecar["clouds"][0]["reconstruction"]
    assert "analysis" in sidecar["clouds"][0]
    import imageio.v3 as iio
    import trimesh

    assert json.loads(iio.immeta(tmp_path / "a" / "turntable.gif")["comment"])["seed"] == 5
    glb = trimesh.load(tmp_path / "a" / "mesh_0001.glb")
    assert glb.metadata["noisecraft"]["seed"] == 6 and glb.metadata["noisecraft"]["reconstruction"]
    obj = pipeline.save_outputs(pipeline.generate(request | {"n": 1, "mesh_format": "obj"}, seed=5), tmp_path / "o")
    text = (tmp_path / "o" / "mesh_0000.obj").read_text()
    assert any(f.name == "mesh_0000.obj" for f in obj) and text.startswith("# noisecraft {") and "\nf " in text
    other = pipeline.save_outputs(pipeline.generate(request, seed=6), tmp_path / "c")
    moved = read_ply(tmp_path / "c" / "cloud_0000.ply")[0]  # cloud i uses seed + i
    assert np.allclose(moved, points, atol=1e-5)


def test_bad_requests_are_refused_naming_the_parameter(tiny):
    pipeline = noisecraft.load(tiny)
    with pytest.raises(ParameterError, match="'points'.*>= 16"):
        pipeline.generate({"points": 0, "steps": 1})
    with pytest.raises(ParameterError, match="'points'.*<= 256"):
        pipeline.generate({"points": 257, "steps": 1})
    with pytest.raises(ParameterError, match="'prompt'"):
        pipeline.generate({"prompt": "   ", "steps": 1})
    with pytest.raises(ParameterError, match="does not know the word 'pyramid'.*knows .* words"):
        pipeline.generate({"prompt": "a tall pyramid", "steps": 1})  # the tiny model's encoder is a learned one
    clouds, record = pipeline.sample(1, points=200, steps=1)  # other sizes than the training one
    assert clouds.shape == (1, 200, 3) and record["prompt"] is None


def test_alpha_shape_keeps_the_hole_of_a_torus():
    import trimesh

    cloud = make_sample("torus", "plain", points=1024, size="large").points
    vertices, faces, record = alpha_shape(cloud)
    mesh = trimesh.Trimesh(vertices, faces)
    assert record["reconstruction"] == "alpha shape" and record["closed"] and mesh.is_watertight
    hull = trimesh.Trimesh(*alpha_shape(cloud, alpha=1e9)[:2])
    assert abs(mesh.volume) < 0.85 * abs(hull.volume)  # the hole is not filled (a convex hull fills it)


def test_training_refuses_bad_data_and_options(tmp_path):
    with pytest.raises(ValueError, match="unknown points training option"):
        train_points({"out_dir": str(tmp_path / "x"), "pointz": 3})
    with pytest.raises(FileNotFoundError, match="no such mesh folder"):
        train_points({"out_dir": str(tmp_path / "x"), "data": str(tmp_path / "nowhere")})
    (tmp_path / "meshes").mkdir()
    (tmp_path / "meshes" / "empty.obj").write_text("v 0 0 0\n")
    with pytest.raises(ValueError, match="empty.obj.*empty"):
        train_points({"out_dir": str(tmp_path / "x"), "data": str(tmp_path / "meshes")})


def test_cli_generate_and_bad_points(tiny, tmp_path):
    from typer.testing import CliRunner

    from noisecraft.points.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["generate", "a thin torus", "--points", "32", "--steps", "1", "--batch", "1",
                                 "--model", str(tiny), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "cloud_0000.ply").is_file()
    result = runner.invoke(app, ["generate", "a cube", "--points", "0", "--model", str(tiny)])
    assert result.exit_code != 0 and "points" in str(result.exception)
