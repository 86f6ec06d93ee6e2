"""Two-part scenes of the points world (noisecraft.points.scenes): captions, geometry, the analyser's split."""

import numpy as np
import pytest

from noisecraft.points.evaluate import judge, scene_prompts
from noisecraft.points.scenes import (GAP, SMALL_FACTOR, analyze_scene, make_scene, matches_scene, parse_scene,
                                      reference_scenes, split_parts)
from noisecraft.points.world import PointsWorld, WorldConfig, _rng, vocabulary


def test_scene_captions_parse_back():
    first, second = parse_scene("a small cone next to a sphere")
    assert (first["shape"], first["proportion"], first["size"]) == ("cone", "plain", "small")
    assert (second["shape"], second["size"]) == ("sphere", None)
    assert parse_scene("a tall cylinder") is None and parse_scene("a cone next to a pyramid") is None
    assert {"next", "to"} <= set(vocabulary())


def test_scene_geometry_sizes_and_gap():
    scene = make_scene(("cone", "plain"), ("sphere", "plain"), points=600, rng=_rng(0, 1), small=0,
                       size_word_prob=1.0)
    assert scene.caption == "a small cone next to a sphere"
    xyz = scene.points
    assert xyz.shape == (600, 3) and np.allclose(xyz.mean(0), 0, atol=1e-5)
    assert 0.9 - 1e-5 <= np.linalg.norm(xyz, axis=1).max() <= 1.0 + 1e-5
    cone, sphere = xyz[:300], xyz[300:]  # the first half of the points is the first part
    r_cone = np.linalg.norm(cone - cone.mean(0), axis=1).max()
    r_sphere = np.linalg.norm(sphere - sphere.mean(0), axis=1).max()
    assert r_cone / r_sphere == pytest.approx(SMALL_FACTOR, rel=0.25)  # radii about the centroid, not the centre
    gap = np.linalg.norm(cone[:, None] - sphere[None], axis=2).min()
    assert gap >= GAP * r_sphere * 0.5 and abs(xyz[:, 2].mean()) < 1e-5
    a, b = split_parts(xyz)
    assert sorted([len(a), len(b)]) == [300, 300]


def test_world_mixes_scenes_and_the_analyser_reads_them():
    assert PointsWorld({"points": 64}, size=5)[3]["caption"] == PointsWorld({"points": 64, "scenes": 0.0},
                                                                             size=5)[3]["caption"]
    world = PointsWorld({"points": 384, "scenes": 1.0}, size=12, seed=2)
    held = set(WorldConfig().combinations("held_out"))
    for i in range(len(world)):
        sample = world.sample(i)
        assert " next to " in sample.caption
        parts = parse_scene(sample.caption)
        assert not {(p["shape"], p["proportion"]) for p in parts} & held
        ok, reasons = matches_scene(analyze_scene(sample.points), sample.caption)
        assert ok, (sample.caption, reasons)
    ok, reasons = judge(world.sample(0).points, "a thin torus next to a thin torus")
    assert not ok and reasons[0].startswith("part 1")
    with pytest.raises(ValueError, match="scenes"):
        WorldConfig(scenes=1.5)


def test_reference_scenes_and_prompts():
    clouds = reference_scenes("a tall cylinder next to a small cube", 2, points=256)
    assert clouds.shape == (2, 256, 3)
    for cloud in clouds:
        parts = analyze_scene(cloud)
        assert matches_scene(parts, "a tall cylinder next to a small cube")[0]
        assert sorted(p["size"] for p in parts) == ["large", "small"]
    assert scene_prompts(None) == [] and len(scene_prompts({"scenes": 0.2}, count=4)) == 4
    with pytest.raises(ValueError, match="two-part"):
        reference_scenes("a cube", 1)


def test_correctness_by_shape_averages_each_groups_prompts():
    from noisecraft.points.evaluate import by_shape

    prompts = {"a cube": {"group": "seen", "correct": 0.0}, "a flat box": {"group": "seen", "correct": 0.5},
               "a torus": {"group": "seen", "correct": 1.0}, "a tall cone": {"group": "held_out", "correct": 0.25},
               "a small cone next to a sphere": {"group": "scenes", "correct": 0.5}}
    assert by_shape(prompts) == {"seen": {"box": 0.25, "torus": 1.0}, "held_out": {"cone": 0.25},
                                 "scenes": {"cone": 0.5}}
