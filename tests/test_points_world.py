"""The points world (noisecraft.points.world), its data sets (noisecraft.points.data) and the analyser."""

import json

import numpy as np
import pytest

from noisecraft.points.analyzer import analyze, matches_prompt
from noisecraft.points.data import MeshFolder, load_mesh_triangles
from noisecraft.points.world import PointsWorld, WorldConfig, caption, make_sample, parse_caption


def test_captions_and_held_out_split():
    assert caption("cylinder", "tall") == "a tall cylinder"
    assert caption("box", "plain") == "a cube" and caption("box", "flat", "small") == "a small flat box"
    assert parse_caption("a thin torus") == {"shape": "torus", "proportion": "thin", "size": None}
    config = WorldConfig()
    train, held = config.combinations("train"), config.combinations("held_out")
    assert ("cone", "tall") in held and not set(train) & set(held)
    world = PointsWorld({"points": 64}, size=50)
    assert all((world[i]["shape"], world[i]["proportion"]) not in held for i in range(len(world)))


def test_items_are_deterministic_centred_and_in_the_unit_ball():
    world = PointsWorld({"points": 128, "normals": True}, size=30, seed=3)
    a, b = world[7], PointsWorld({"points": 128, "normals": True}, size=30, seed=3)[7]
    assert np.array_equal(a["points"], b["points"]) and a["points"].shape == (128, 6)
    xyz, normals = a["points"][:, :3], a["points"][:, 3:]
    assert np.allclose(xyz.mean(0), 0, atol=1e-5) and np.linalg.norm(xyz, axis=1).max() <= 1.0 + 1e-5
    assert np.allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-4)


def test_analyser_is_right_on_clean_world_clouds():
    world = PointsWorld({"points": 384, "held_out": []}, size=1000, seed=11, split="all")
    wrong = []
    for i in range(len(world.pairs) * 2):
        sample = world.sample(i)
        result = analyze(sample.points)
        ok, reasons = matches_prompt(result, caption(sample.shape, sample.proportion, sample.size))
        if not ok:
            wrong.append((sample.caption, reasons))
    assert not wrong, wrong


def test_analyser_names_its_reasons():
    cloud = make_sample("cylinder", "tall", points=512, size="large").points
    ok, reasons = matches_prompt(analyze(cloud), "a flat box")
    assert not ok and "asked for a box, got a cylinder" in reasons[0]
    ok, reasons = matches_prompt(analyze(cloud), "a flat cylinder")
    assert not ok and "asked for flat, got tall" in reasons[0]
    noise = np.random.default_rng(0).normal(size=(512, 3))
    result = analyze(noise)
    assert result.shape is None and "no primitive fits" in result.reason


def test_mesh_folder_labels_captions_and_bad_meshes(tmp_path):
    import trimesh

    for label, mesh in (("boxes", trimesh.creation.box()), ("balls", trimesh.creation.icosphere(2))):
        (tmp_path / "data" / label).mkdir(parents=True)
        mesh.apply_scale(7.0)
        mesh.export(tmp_path / "data" / label / "a.stl")
        mesh.export(tmp_path / "data" / label / "b.obj")
    folder = MeshFolder(tmp_path / "data", points=100)
    assert folder.class_names == ["balls", "boxes"] and len(folder) == 4
    item = folder[0]
    assert item["points"].shape == (100, 3) and np.linalg.norm(item["points"], axis=1).max() <= 1 + 1e-6
    (tmp_path / "data" / "boxes" / "broken.ply").write_text("not a mesh at all")
    (tmp_path / "data" / "boxes" / "empty.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    (tmp_path / "data" / "boxes" / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n")
    with pytest.raises(ValueError, match="--skip-bad") as error:
        MeshFolder(tmp_path / "data", points=50)
    assert "broken.ply" in str(error.value) and "empty.obj" in str(error.value) and "flat.obj" in str(error.value)
    skipped = MeshFolder(tmp_path / "data", points=50, skip_bad=True)
    assert len(skipped) == 4 and "broken.ply" in skipped.report
    with pytest.raises(ValueError, match="no such mesh file"):
        load_mesh_triangles(tmp_path / "missing.obj")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="unknown mesh format"):
        load_mesh_triangles(tmp_path / "notes.txt")
    captioned = tmp_path / "captioned"
    captioned.mkdir()
    trimesh.creation.box().export(captioned / "x.glb")
    (captioned / "metadata.jsonl").write_text(json.dumps({"file_name": "x.glb", "text": "a box"}) + "\n")
    assert MeshFolder(captioned, points=10)[0]["caption"] == "a box"
