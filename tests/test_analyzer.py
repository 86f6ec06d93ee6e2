"""The analyzer (images back to objects, prompt matching) and the GenEval-style benchmark scorer."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from noisecraft.shapes.analyzer import (FAILURES, analyze, check, diagnose, matches, objects_of, relation_holds,
                                       to_rgb_array)
from noisecraft.shapes.benchmark import (CATEGORIES, PROMPT_SETS, SEEN_CATEGORIES, benchmark_prompts, format_table,
                                         frechet_distance, generation_batches, load_results, random_prompts,
                                         render_benchmark_prompts, render_prompts, run_benchmark, save_results, score,
                                         select_prompts)
from noisecraft.shapes.world import (COLOURS, SHAPES, SIZES, ObjectSpec, PromptSpec, Scene, ShapeObject,
                                     ShapesWorldConfig, describe, is_held_out, make_example, parse_prompt, render)
from noisecraft.text.prompts import is_composed, parse_composition


def identities(objects):
    return sorted((o.colour, o.shape, o.size) for o in objects)


def exact(scene, found):
    return identities(found) == identities(scene.objects) and matches(describe(scene), found)


def test_exact_scene_accuracy_on_fresh_renders():
    # 300 renders here (1,000 measured once: 100%); each must give back exactly its objects and match its caption
    results = [exact(scene, analyze(render(scene))) for scene, _ in (make_example(2024, i) for i in range(300))]
    assert np.mean(results) >= 0.99


def test_robust_to_blur_noise_and_colour_drift():
    rng = np.random.default_rng(0)
    results = []
    for i in range(150):
        scene, _ = make_example(99, i)
        image = render(scene).filter(ImageFilter.GaussianBlur(0.6))
        pixels = np.asarray(image, float) + rng.normal(0, 8, (32, 32, 3)) + rng.uniform(-15, 15, 3)
        results.append(exact(scene, analyze(np.clip(np.round(pixels), 0, 255).astype(np.uint8))))
    assert np.mean(results) >= 0.95


@pytest.mark.parametrize("size", list(SIZES))
def test_every_colour_shape_and_size(size):
    for colour in COLOURS:
        for shape in SHAPES:
            (found,) = analyze(render(Scene("single", (ShapeObject(colour, shape, size, (0.45, 0.55)),))))
            assert (found.colour, found.shape, found.size) == (colour, shape, size)
            assert found.centroid[0] == pytest.approx(0.45, abs=0.03)


def test_relation_direction_is_checked():
    a = ShapeObject("red", "circle", "small", (0.25, 0.5))
    b = ShapeObject("blue", "square", "large", (0.7, 0.55))
    found = analyze(render(Scene("relation", (a, b), "left of")))
    assert check(render(Scene("relation", (a, b), "left of")), "a red circle to the left of a blue square")
    assert matches(parse_prompt("a blue square with a red circle on its left"), found)
    assert not matches(parse_prompt("a red circle to the right of a blue square"), found)
    assert not matches(parse_prompt("a red circle above a blue square"), found)  # mostly beside, not above
    assert relation_holds("above", (0.5, 0.2), (0.55, 0.8)) and not relation_holds("below", (0.5, 0.2), (0.55, 0.8))


def test_counts_sizes_and_extra_objects_must_match_exactly():
    scene = Scene("count", tuple(ShapeObject("green", "triangle", "small", (x, 0.3)) for x in (0.2, 0.5, 0.8)))
    found = analyze(render(scene))
    assert matches(parse_prompt("three green triangles"), found)
    assert not matches(parse_prompt("two green triangles"), found)
    assert not matches(parse_prompt("a large green triangle"), objects_of(Scene("single", scene.objects[:1])))
    assert matches(parse_prompt("a small green triangle"), objects_of(Scene("single", scene.objects[:1])))
    assert not matches(parse_prompt("a green triangle and a red circle"), found)
    assert not matches(None, found)  # an unparsable prompt matches nothing


def test_input_formats_agree_and_bad_input_is_explained():
    scene, _ = make_example(1, 3)
    image = render(scene)
    tensor = torch.from_numpy(np.asarray(image, np.float32)).permute(2, 0, 1) / 127.5 - 1
    from_pil, from_array, from_tensor = analyze(image), analyze(np.asarray(image)), analyze(tensor)
    assert from_pil == from_array
    assert identities(from_tensor) == identities(from_pil)
    assert np.allclose([o.centroid for o in from_tensor], [o.centroid for o in from_pil])
    with pytest.raises(ValueError, match=r"\[3, H, W\]"):
        analyze(tensor[None])
    with pytest.raises(TypeError, match="uint8"):
        analyze(np.asarray(image, np.float32))
    with pytest.raises(TypeError, match="PIL image"):
        analyze([1, 2, 3])


def test_noise_and_off_palette_images_match_nothing():
    noise = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert not check(noise, "a red circle")
    assert analyze(Image.new("RGB", (32, 32), (128, 128, 128))) == []  # grey is no palette colour
    everything_red = analyze(Image.new("RGB", (32, 32), (220, 40, 40)))
    assert [o.size for o in everything_red] == ["unknown"]


def test_to_rgb_array_maps_tensor_range_to_pixels():
    assert to_rgb_array(torch.full((3, 2, 2), -1.0)).max() == 0
    assert to_rgb_array(torch.full((3, 2, 2), 1.0)).min() == 255


# ----------------------------------------------------------------------------------------------------- benchmark


def check_prompt_meanings(prompts, config=ShapesWorldConfig()):
    """Every prompt carries its meaning: grammar prompts parse back to it, composed ones name its objects, and only
    the held-out category asks for held-out combinations."""
    assert len({p.text for p in prompts}) == len(prompts)
    for p in prompts:
        assert p.meaning, p.text
        assert (p.category == "composition") == is_composed(p.text), p.text
        if p.category != "composition":
            assert p.meaning == (parse_prompt(p.text),), p.text
            assert is_held_out(p.meaning[0], config) == (p.category == "held_out"), p.text
            continue
        concepts = parse_composition(p.text)
        if concepts[1].weight > 0:  # "A AND B": both objects, nothing else
            assert p.meaning == (PromptSpec(tuple(parse_prompt(c.text).objects[0] for c in concepts)),), p.text
        else:  # "a circle AND red:-1": the shape in every other colour
            shape, colour = concepts[0].text.split()[-1], concepts[1].text
            assert concepts[1].weight == -1 and colour in COLOURS
            assert {s.objects for s in p.meaning} == {(ObjectSpec(c, shape),) for c in COLOURS if c != colour}


def test_prompt_set_is_fixed_and_separates_seen_from_held_out():
    prompts = benchmark_prompts()
    assert prompts == benchmark_prompts()
    assert {p.category for p in prompts} == set(CATEGORIES)
    check_prompt_meanings(prompts)
    assert [p.text for p in prompts if p.category == "composition"][:1] == ["a red circle AND a blue square"]
    assert any(p.text == "a circle AND red:-1" for p in prompts)
    # composition comes last, so the other prompts keep the batches (and images) of earlier versions
    assert all(p.category == "composition" for p in prompts[-7:])


def test_random_prompts_are_reproducible_per_seed_and_cover_every_category():
    config = ShapesWorldConfig()
    first, again, other = random_prompts(48, 0, config), random_prompts(48, 0, config), random_prompts(48, 1, config)
    assert first == again and first != other and len(first) == 48
    assert [p.category for p in first[:len(CATEGORIES)]] == list(CATEGORIES)
    fixed = {p.text for p in benchmark_prompts(config)}
    assert len({p.text for p in first} - fixed) > 30  # mostly combinations and phrasings the fixed list lacks
    for seed in range(5):
        check_prompt_meanings(random_prompts(40, seed, config), config)
    phrasings = {p.text.split(" a ")[0] for p in random_prompts(400, 3, config) if p.category == "position"}
    assert len(phrasings) > 3  # several phrasings, not just the canonical one
    assert {p.category for p in random_prompts(16, 0, ShapesWorldConfig(held_out_pairs=[], held_out_relations=[]))
            } == set(CATEGORIES) - {"held_out"}
    assert {p.category for p in select_prompts("random", 6, 0, config, ["composition"])} == {"composition"}
    assert [p.category for p in select_prompts("fixed", categories=["composition"])] == ["composition"] * 7
    with pytest.raises(ValueError, match="unknown prompt set"):
        select_prompts("mixed")
    with pytest.raises(ValueError, match="categories from"):
        random_prompts(4, 0, config, ["colors"])
    with pytest.raises(ValueError, match=r"unknown categories \['colors'\]"):
        select_prompts("fixed", categories=["colours", "colors"])
    assert PROMPT_SETS == ("fixed", "random") and "composition" not in SEEN_CATEGORIES


def test_composed_prompts_get_batches_of_their_own():
    texts = ["a red circle", "a circle AND red:-1", "two blue squares"]
    assert generation_batches(texts, 2, 3) == [["a red circle", "a red circle", "two blue squares"],
                                               ["two blue squares"], ["a circle AND red:-1"] * 2]


PROMPTS_BY_TEXT = {p.text: p for seed in (0, 1) for p in random_prompts(48, seed)} | {
    p.text: p for p in benchmark_prompts()}


def perfect(prompts, seed):
    return render_benchmark_prompts([PROMPTS_BY_TEXT[text] for text in prompts], seed + 1000)


def test_diagnose_names_the_first_reason_an_image_fails():
    def found(*objects):
        return objects_of(Scene("pair", tuple(ShapeObject(*o) for o in objects)))

    red_circle_left = ("red", "circle", "small", (0.25, 0.5))
    blue_square_right = ("blue", "square", "large", (0.7, 0.55))
    pair = found(red_circle_left, blue_square_right)
    assert diagnose(parse_prompt("a red circle to the left of a blue square"), pair) is None
    assert diagnose(parse_prompt("a red circle to the right of a blue square"), pair) == "relation"
    assert diagnose(parse_prompt("a red circle"), pair) == "count"
    assert diagnose(None, pair) == "count"
    assert diagnose(parse_prompt("a red circle and a green square"), pair) == "identity"
    assert diagnose(parse_prompt("a red square and a blue circle"), pair) == "binding"  # attributes swapped
    assert diagnose(parse_prompt("a large red circle"), found(red_circle_left)) == "size"
    # a relation prompt drawn with the colours in place but the shapes swapped is a binding failure
    swapped = found(("red", "square", "large", (0.5, 0.2)), ("green", "circle", "large", (0.5, 0.75)))
    assert diagnose(parse_prompt("a red circle above a green square"), swapped) == "binding"
    assert diagnose(parse_prompt("a red square above a green circle"), swapped) is None
    assert diagnose(parse_prompt("a red square below a green circle"), swapped) == "relation"
    assert set(FAILURES) == {"count", "identity", "binding", "size", "relation"}


def test_perfect_generator_scores_one_and_wrong_generator_scores_low():
    results = run_benchmark(perfect, n_per_prompt=2)
    assert all(value == 1.0 for value in results["categories"].values()), results["categories"]
    assert results["overall"] == 1.0 and results["held_out"] == 1.0 and results["composition"] == 1.0
    assert results["prompts"][-1] == {"text": "a triangle AND green:-1", "category": "composition",
                                      "meaning": ["a red triangle", "a blue triangle", "a yellow triangle",
                                                  "a purple triangle"]}
    random_results = run_benchmark(perfect, n_per_prompt=2, prompts=random_prompts(48, 1))
    assert set(random_results["categories"].values()) == {1.0} and len(random_results["categories"]) == 8
    assert random_results["phrasings"] == {"training": 1.0, "paraphrase": 1.0}
    assert results["phrasings"] == {"training": 1.0, "paraphrase": None}  # the fixed list: training templates
    prompts = benchmark_prompts()
    subset = prompts[::3]  # every category, fewer images

    def wrong(texts, seed):  # renders another prompt's scene
        index = {p.text: i for i, p in enumerate(prompts)}
        return render_benchmark_prompts([prompts[(index[t] + 7) % len(prompts)] for t in texts], seed)

    wrong_results = run_benchmark(wrong, n_per_prompt=2, prompts=subset)
    assert wrong_results["overall"] < 0.2
    # every failed image has exactly one reason, and a perfect generator has none
    assert sum(sum(tally.values()) for tally in results["failures"].values()) == 0
    for category, tally in wrong_results["failures"].items():
        images = sum(2 for p in subset if p.category == category)
        assert sum(tally.values()) == round(images * (1 - wrong_results["categories"][category]))
    assert "failed images by reason" in format_table(wrong_results)
    assert "failed images by reason" not in format_table(results)

    def noise(prompts, seed):
        return torch.rand(len(prompts), 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1

    noise_results = run_benchmark(noise, n_per_prompt=2, prompts=subset)
    assert noise_results["overall"] == 0.0 and noise_results["composition"] == 0.0
    assert noise_results["fd"] > 20 * results["fd"]
    assert noise_results["diversity"] < 0.5 * noise_results["reference_diversity"]  # noise is all alike
    table = format_table(results)
    assert all(category in table for category in CATEGORIES) and "frechet distance" in table


def test_frechet_distance_of_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    b = rng.normal(size=(4000, 3)) * 2 + 1
    # closed form: |mu|^2 + tr(I + 4I - 2 * 2I) = 3 + 3
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_score_rejects_bad_input_and_results_round_trip(tmp_path):
    prompt = benchmark_prompts()[0].text
    with pytest.raises(ValueError, match="not in the benchmark prompt set"):
        score({"a red hexagon": torch.zeros(1, 3, 32, 32)})
    with pytest.raises(ValueError, match=r"\[n, 3, H, W\]"):
        score({prompt: torch.zeros(3, 32, 32)})
    with pytest.raises(ValueError, match="generate must return"):
        run_benchmark(lambda prompts, seed: torch.zeros(1, 3, 32, 32), n_per_prompt=2)
    results = score({prompt: perfect([prompt] * 3, 0)})
    assert results["categories"] == {"single_object": 1.0} and results["held_out"] is None
    assert load_results(save_results(results, tmp_path / "r.json")) == results
    with pytest.raises(FileNotFoundError):
        load_results(tmp_path / "missing.json")
