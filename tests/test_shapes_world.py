"""The shapes world: deterministic rendering, exact colours, geometry, held-out combinations, caption grammar."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from noisecraft.shapes.world import (BACKGROUND, BORDER, GAP, PALETTE, PARAPHRASES, PERPENDICULAR_RATIO, SIZES,
                                     TEMPLATES, ObjectSpec, PromptSpec, Scene, ShapeObject, ShapesDataset,
                                     ShapesWorldConfig, caption, describe, export_shapes, format_prompt, is_held_out,
                                     is_paraphrase, make_example, num_phrasings, parse_prompt, relation_spec, render,
                                     sample_scene, scene_from_spec, vocabulary)


def scenes(n, seed=0, config=None):
    return [make_example(seed, i, config) for i in range(n)]


def test_same_seed_same_bytes_and_different_index_differs():
    first = [render(scene).tobytes() for scene, _ in scenes(20, seed=3)]
    again = [render(scene).tobytes() for scene, _ in scenes(20, seed=3)]
    assert first == again
    assert len(set(first)) == 20
    a, b = ShapesDataset(10, seed=5), ShapesDataset(10, seed=5)
    for i in range(10):
        assert torch.equal(a[i]["image"], b[i]["image"]) and a[i]["caption"] == b[i]["caption"]


@pytest.mark.parametrize("resolution", [32, 64])
def test_exact_fill_colour_at_object_centres_and_background_elsewhere(resolution):
    config = ShapesWorldConfig(resolution=resolution)
    for scene, _ in scenes(60, seed=11, config=config):
        pixels = np.asarray(render(scene, resolution))
        for obj in scene.objects:
            column, row = (int(c * resolution) for c in obj.center)
            assert tuple(pixels[row, column]) == PALETTE[obj.colour], (obj, scene)
        assert tuple(pixels[0, 0]) == BACKGROUND  # the corner pixel lies inside the border margin


def test_objects_inside_the_image_and_apart():
    for scene, _ in scenes(300, seed=1):
        for i, a in enumerate(scene.objects):
            half = SIZES[a.size] / 2
            assert all(BORDER + half - 1e-9 <= c <= 1 - BORDER - half + 1e-9 for c in a.center)
            for b in scene.objects[i + 1:]:
                separation = max(abs(a.center[k] - b.center[k]) for k in (0, 1)) - (SIZES[a.size] + SIZES[b.size]) / 2
                assert separation >= GAP - 1e-9


def test_relation_scenes_are_unambiguous():
    relation_scenes = [s for s, _ in scenes(400, seed=2) if s.kind == "relation"]
    assert len(relation_scenes) > 50
    for scene in relation_scenes:
        a, b = scene.objects
        axis = 0 if scene.relation in ("left of", "right of") else 1
        sign = 1 if scene.relation in ("left of", "above") else -1
        along = sign * (b.center[axis] - a.center[axis])
        across = abs(b.center[1 - axis] - a.center[1 - axis])
        assert along >= (SIZES[a.size] + SIZES[b.size]) / 2 + GAP - 1e-9  # boxes disjoint along the axis
        assert across <= PERPENDICULAR_RATIO * along + 1e-9


def test_held_out_combinations_never_appear_in_training_scenes():
    config = ShapesWorldConfig()
    kinds = set()
    for scene, text in scenes(3000, seed=4, config=config):
        kinds.add(scene.kind)
        assert not any((o.colour, o.shape) in config.held_out_pairs for o in scene.objects), text
        spec = parse_prompt(text)
        assert not is_held_out(spec, config), text
        if spec.relation:
            a, b = spec.objects
            assert (a.shape, spec.relation, b.shape) != ("triangle", "above", "square"), text
    assert kinds == {"single", "count", "relation", "pair"}


def test_held_out_relation_covers_its_paraphrases():
    config = ShapesWorldConfig()
    for text in ("a red triangle above a blue square", "a blue square below a red triangle",
                 "a blue square with a red triangle above it", "a red triangle with a blue square below it"):
        assert is_held_out(parse_prompt(text), config), text
    assert not is_held_out(parse_prompt("a red square above a blue triangle"), config)
    assert is_held_out(parse_prompt("two yellow triangles"), config)
    # the same triple given in its inverse phrasing is canonicalised
    assert ShapesWorldConfig(held_out_relations=[("square", "below", "triangle")]).held_out_relations == [
        ("triangle", "above", "square")]


def test_captions_parse_back_to_their_scene():
    for scene, text in scenes(1500, seed=6):
        assert parse_prompt(text) == describe(scene), text


def test_every_template_of_a_relation_parses_to_the_same_spec():
    spec = relation_spec(ObjectSpec("red", "circle"), "right of", ObjectSpec("green", "triangle"))
    assert spec == PromptSpec((ObjectSpec("green", "triangle"), ObjectSpec("red", "circle")), "left of")
    texts = {format_prompt(spec, t, d) for t in range(len(TEMPLATES["left of"])) for d in ("a", "one")}
    assert "a green triangle with a red circle on its right" in texts
    assert all(parse_prompt(text) == spec for text in texts)


def test_every_phrasing_parses_back_to_the_same_meaning():
    """Training templates and the benchmark's extra paraphrases, with either determiner, for every kind of spec
    (held-out ones included): the parser reads the meaning back exactly."""
    specs = [describe(scene) for scene, _ in scenes(300, seed=11)]
    specs += [parse_prompt("a yellow triangle above a blue square"), parse_prompt("three purple circles")]
    for spec in specs:
        texts = {format_prompt(spec, t, d, paraphrases=True) for t in range(num_phrasings(spec)) for d in ("a", "one")}
        assert len(texts) >= num_phrasings(spec)
        assert all(parse_prompt(text) == spec for text in texts), [t for t in texts if parse_prompt(t) != spec]
    spec = parse_prompt("a red circle to the left of a blue square")
    for text in ("a red circle left of a blue square", "to the right of a red circle is a blue square",
                 "to the left of a blue square is a red circle", "a blue square right of a red circle"):
        assert parse_prompt(text) == spec, text
    assert parse_prompt("below a blue square is a red circle") == parse_prompt("a blue square over a red circle")
    with pytest.raises(ValueError, match="template must be in"):
        format_prompt(spec, len(TEMPLATES["left of"]))  # paraphrases only when asked for


def test_paraphrases_stay_out_of_training_captions():
    words = set(vocabulary())
    assert not {"image", "picture", "over", "under", "both", "well", "is"} & words
    assert len(PARAPHRASES) == len(TEMPLATES)
    for _, text in scenes(300, seed=12):
        assert not text.startswith(("an image", "a picture", "both", "to the", "above", "below")), text


def test_parse_examples_and_unknown_words():
    assert parse_prompt("a small red circle") == PromptSpec((ObjectSpec("red", "circle", "small"),))
    assert parse_prompt("Two blue squares.") == PromptSpec((ObjectSpec("blue", "square", None, 2),))
    assert parse_prompt("a green triangle with a red circle on its left") == parse_prompt(
        "a red circle to the left of a green triangle")
    assert parse_prompt("a red circle and a blue square").objects == (ObjectSpec("red", "circle"),
                                                                      ObjectSpec("blue", "square"))
    for text in ("a red hexagon", "a red circle near a blue square", "", "a big red circle",
                 "two red circles above a blue square"):
        assert parse_prompt(text) is None, text


def test_scene_from_spec_realises_any_spec_including_held_out():
    rng = np.random.default_rng(0)
    spec = parse_prompt("a yellow triangle above a blue square")
    scene = scene_from_spec(spec, rng)
    assert scene.kind == "relation" and describe(scene) == spec
    scene = scene_from_spec(parse_prompt("three purple circles"), rng)
    assert [o.colour + o.shape for o in scene.objects] == ["purplecircle"] * 3


def test_caption_words_are_in_the_vocabulary():
    words = set(vocabulary())
    for _, text in scenes(500, seed=8):
        assert set(text.split()) <= words, text


def test_render_rejects_unknown_attributes():
    with pytest.raises(ValueError, match="unknown shape"):
        render(Scene("single", (ShapeObject("red", "star", "small", (0.5, 0.5)),)))
    with pytest.raises(ValueError, match="unknown colour"):
        render(Scene("single", (ShapeObject("pink", "circle", "small", (0.5, 0.5)),)))


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="resolution"):
        ShapesWorldConfig(resolution=8)
    with pytest.raises(ValueError, match="held_out_pairs"):
        ShapesWorldConfig(held_out_pairs=[("pink", "circle")])
    with pytest.raises(ValueError, match="kind_weights"):
        ShapesWorldConfig(kind_weights={"single": -1.0})
    config = ShapesWorldConfig(resolution=48, kind_weights={"single": 1.0})
    assert ShapesWorldConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    rng = np.random.default_rng(0)
    assert {sample_scene(rng, config).kind for _ in range(20)} == {"single"}


@pytest.mark.parametrize("resolution,channels", [(16, 3), (32, 1), (64, 3)])
def test_dataset_items(resolution, channels):
    data = ShapesDataset(4, seed=1, config=ShapesWorldConfig(resolution=resolution), channels=channels, cache=True)
    item = data[2]
    assert item["image"].shape == (channels, resolution, resolution) and item["image"].dtype == torch.float32
    assert -1 <= item["image"].min() and item["image"].max() <= 1 and item["index"] == 2
    assert isinstance(item["caption"], str) and parse_prompt(item["caption"]) is not None
    assert torch.equal(data[2]["image"], item["image"])
    with pytest.raises(IndexError):
        data[4]
    with pytest.raises(ValueError, match="channels"):
        ShapesDataset(4, channels=2)


def test_export_writes_images_and_metadata(tmp_path):
    out = export_shapes(tmp_path / "shapes", n=5, seed=2)
    records = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["file_name"] for r in records] == [f"{i:05d}.png" for i in range(5)]
    for i, record in enumerate(records):
        scene, text = make_example(2, i)
        assert record["text"] == text
        assert Image.open(out / record["file_name"]).tobytes() == render(scene).tobytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        export_shapes(out, n=5, seed=2)


def test_caption_without_rng_is_canonical():
    scene = scene_from_spec(parse_prompt("a red circle to the right of a blue square"), np.random.default_rng(1))
    assert caption(scene) == "a blue square to the left of a red circle"


def test_is_paraphrase_tells_benchmark_phrasings_from_training_ones():
    assert is_paraphrase("to the right of a red circle is a blue square")
    assert is_paraphrase("an image of two blue squares")
    assert not is_paraphrase("a blue square to the right of a red circle")
    assert not any(is_paraphrase(text) for _, text in scenes(200, seed=13))
    assert not is_paraphrase("a red hexagon")
