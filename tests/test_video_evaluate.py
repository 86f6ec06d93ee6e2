import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from noisecraft.protocol import Generation
from noisecraft.shapes.analyzer import DetectedObject
from noisecraft.video.classifier import (MovingShapesClassifier, clip_features, clip_targets, fd_msc, head_accuracy,
                                         load_classifier, save_classifier, shipped_classifier)
from noisecraft.video.eval_prompts import CATEGORIES, random_prompts, reference_clips
from noisecraft.video.evaluate import evaluate_clips, evaluate_model, format_table, score_clip
from noisecraft.video.temporal import flicker, identity_check, object_masks
from noisecraft.video.world import (MotionSpec, VideoPromptSpec, VideoWorldConfig, clip_from_spec, make_example,
                                    parse_prompt, render_clip)


def _clip(text: str, seed: int = 0, frames: int = 8):
    clip = clip_from_spec(parse_prompt(text), np.random.default_rng(seed), frames)
    return clip, render_clip(clip)


def test_ground_truth_clips_score_one_in_every_category():
    prompts = random_prompts(10, seed=3)
    assert {p.category for p in prompts} == set(CATEGORIES)
    assert all(parse_prompt(p.text) == p.spec for p in prompts)  # every phrasing is in the grammar
    clips = [[frames for _, frames in reference_clips(p, 2, 8, seed=k)] for k, p in enumerate(prompts)]
    record = evaluate_clips(prompts, clips)
    for summary in (record["seen"], record["held_out"], *record["categories"].values()):
        assert summary["fully_right"] == 1.0 and summary["identity_kept"] == 1.0 and summary["frames_right"] == 1.0
        assert summary["flicker"] == 0.0  # rendered backgrounds never change
    assert not any(n for tally in record["failures"].values() for n in tally.values())
    assert "seen" in format_table(record)


def test_world_training_clips_are_fully_right():
    for index in range(12):
        clip, text = make_example(7, index, VideoWorldConfig(frames=12))
        verdict = score_clip(render_clip(clip), parse_prompt(text))
        assert verdict.fully_right and verdict.reasons == ()


@pytest.mark.parametrize("text, reason", [("a red circle moving right", "wrong_direction"),
                                          ("a small blue square growing", "wrong_direction"),
                                          ("a green triangle moving up and a yellow circle standing still",
                                           "wrong_direction")])
def test_reversed_clip_fails_motion(text, reason):
    _, frames = _clip(text)
    verdict = score_clip(frames[::-1], parse_prompt(text))
    assert not verdict.motion_right and not verdict.fully_right and reason in verdict.reasons


def test_reversed_still_clip_stays_right_and_shuffled_clip_is_not_monotone():
    _, frames = _clip("a purple square standing still")
    assert score_clip(frames[::-1], parse_prompt("a purple square standing still")).fully_right
    text = "a blue circle moving left"
    _, frames = _clip(text)
    shuffled = [frames[0], frames[5], frames[1], frames[2], frames[3], frames[4], frames[6], frames[7]]
    verdict = score_clip(shuffled, parse_prompt(text))  # same first and last frame: the net motion is right
    assert verdict.every_frame and verdict.motions[0].measured == "left"
    assert not verdict.motion_right and verdict.reasons == ("not_monotone",)


def test_colour_swapped_clips_fail_with_reasons():
    text = "a red circle moving right"
    clip, _ = _clip(text)
    blue = replace(clip, objects=(replace(clip.objects[0], colour="blue"),))
    verdict = score_clip(render_clip(blue), parse_prompt(text))
    assert not verdict.fully_right and verdict.every_frame is False and "wrong_colour" in verdict.reasons
    pair = "a red circle moving right and a blue square moving up"
    clip, _ = _clip(pair)
    a, b = clip.objects
    swapped = replace(clip, objects=(replace(a, colour=b.colour), replace(b, colour=a.colour)))
    verdict = score_clip(render_clip(swapped), parse_prompt(pair))
    assert verdict.frames_right == 0.0 and "binding" in verdict.reasons
    triangle = replace(clip, objects=(replace(a, shape="triangle"), b))
    assert "wrong_shape" in score_clip(render_clip(triangle), parse_prompt(pair)).reasons


def test_missing_object_in_one_frame():
    text = "a red circle moving right and a blue square moving up"
    clip, frames = _clip(text)
    alone = render_clip(replace(clip, objects=clip.objects[:1]))
    verdict = score_clip(frames[:3] + alone[3:4] + frames[4:], parse_prompt(text))
    assert verdict.frames_right == 7 / 8 and not verdict.fully_right and "missing_object" in verdict.reasons


def test_flicker_equals_brute_force_on_a_hand_made_clip():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, 4, 5, 3), dtype=np.uint8)
    masks = np.zeros((3, 4, 5), bool)
    masks[0, 1, 1] = masks[1, 2, 3] = masks[2, 0, 0] = masks[2, 3, 4] = True
    total, count = 0.0, 0
    for t in range(2):
        for y in range(4):
            for x in range(5):
                if not (masks[t, y, x] or masks[t + 1, y, x]):
                    for c in range(3):
                        total += abs(int(frames[t + 1, y, x, c]) - int(frames[t, y, x, c])) / 255
                        count += 1
    assert flicker(list(frames), masks) == pytest.approx(total / count, rel=1e-12)
    assert np.isnan(flicker(list(frames), np.ones((3, 4, 5), bool)))


def test_flicker_sees_background_noise_but_not_moving_objects():
    _, frames = _clip("a yellow square moving down and a red triangle growing")
    assert flicker(frames) == 0.0
    masks = object_masks(frames)
    assert masks.any(axis=(1, 2)).all() and not masks.all()
    noisy = [np.clip(np.asarray(f, np.int16) + np.random.default_rng(t).integers(-3, 4, (32, 32, 3)), 0, 255)
             .astype(np.uint8) for t, f in enumerate(frames)]
    assert 0.002 < flicker(noisy) < 0.02  # |difference of two uniform {-3..3}| has mean 16/7 levels


def _objects(*items):
    return [DetectedObject(colour, shape, "small", centroid, 0.04) for colour, shape, centroid in items]


def test_identity_check_names_swaps_and_changes():
    red, blue = ("red", "circle"), ("blue", "square")
    kept = [_objects((*red, (0.2 + 0.05 * t, 0.3)), (*blue, (0.7, 0.7))) for t in range(4)]
    assert identity_check(kept).kept and identity_check(kept).tracks == 2
    swap = kept[:2] + [_objects((*blue, (0.3, 0.3)), (*red, (0.7, 0.7)))] * 2
    assert identity_check(swap).reasons == ("identity_swap",)
    change = kept[:2] + [_objects(("red", "square", (0.3, 0.3)), (*blue, (0.7, 0.7)))] * 2
    assert identity_check(change).reasons == ("identity_change",)
    jump = kept[:2] + [_objects((*red, (0.9, 0.1)), (*blue, (0.7, 0.7)))]  # too far to be the same object
    assert identity_check(jump).kept and identity_check(jump).tracks == 3


def test_classifier_ships_small_and_is_accurate_on_fresh_world_clips():
    folder = shipped_classifier()
    assert (folder / "model.safetensors").stat().st_size < 1_000_000
    info = json.loads((folder / "config.json").read_text())["info"]
    assert info["accuracy_fresh_clips"]["all"] > 0.9
    model = load_classifier()
    clips = [make_example(11, i)[0] for i in range(24)]
    tensors = torch.stack([torch.from_numpy(np.stack([np.asarray(f, np.float32) for f in render_clip(c)]))
                           .permute(3, 0, 1, 2) / 127.5 - 1 for c in clips])
    with torch.no_grad():
        accuracy = head_accuracy(model(tensors), clip_targets(clips))
    assert min(accuracy[head] for head in ("colours", "shapes", "motions", "count")) >= 0.8, accuracy


def test_fd_msc_is_zero_for_a_set_against_itself_and_large_against_noise():
    model = load_classifier()
    clips = [render_clip(make_example(12, i)[0]) for i in range(40)]
    other = [render_clip(make_example(13, i)[0]) for i in range(40)]
    noise = [list(np.random.default_rng(i).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)) for i in range(40)]
    same, world = fd_msc(clips, clips, model), fd_msc(clips, other, model)
    assert abs(same) < 1e-6
    assert fd_msc(noise, clips, model) > 5 * world > 0  # world vs world: only the small-sample bias
    assert clip_features(model, clips[:3]).shape == (3, model.config.features)


def test_classifier_round_trip(tmp_path: Path):
    model = MovingShapesClassifier()
    save_classifier(model, tmp_path, {"note": "untrained"})
    loaded = load_classifier(tmp_path)
    x = torch.rand(2, 3, 8, 32, 32) * 2 - 1
    assert torch.equal(model.features(x), loaded.features(x))
    assert model.features(torch.rand(2, 3, 8, 64, 64)).shape == (2, model.config.features)  # other resolutions
    with pytest.raises(FileNotFoundError, match="train one"):
        load_classifier(tmp_path / "missing")


class WorldPipeline:
    """A perfect generator behind the pipeline contract: world clips of the prompt."""

    def generate(self, params, seed=0):
        clips = reference_clips(params["prompt"], params["batch"], params.get("frames", 8), seed + 777)
        return Generation([frames for _, frames in clips], {**params, "seed": seed, "steps": 0})


def test_evaluate_model_through_the_pipeline_contract(tmp_path: Path):
    world = VideoWorldConfig(held_out_motions=[("red", "square", "left")]).to_dict()
    (tmp_path / "config.json").write_text(json.dumps({"model_config": {"kind": "video", "world": world}}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    record = evaluate_model(WorldPipeline(), tmp_path, prompts=5, per_prompt=2, frames=8, seed=1)
    assert record["seen"]["fully_right"] == 1.0 and record["held_out"]["fully_right"] == 1.0
    assert record["settings"]["world"]["held_out_motions"] == [["red", "square", "left"]]
    assert record["settings"]["world_from_model"] and record["n_clips"] == 10
    assert record["fd_msc"] >= 0 and record["fd_msc_world"] >= 0
    assert "FD-MSC" in format_table(record)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least 2 frames"):
        score_clip(render_clip(make_example(0, 0)[0])[:1], parse_prompt("a red circle moving right"))
    with pytest.raises(ValueError, match="n >= 1"):
        random_prompts(0)
    with pytest.raises(ValueError, match="moving-shapes grammar"):
        reference_clips("a dog running", 1, 8, 0)
    with pytest.raises(ValueError, match="2 clips"):
        fd_msc([render_clip(make_example(0, 0)[0])], [render_clip(make_example(0, 1)[0])] * 2)
    assert VideoPromptSpec((MotionSpec("red", "circle", "right"),)) == parse_prompt("one red circle moving right")


def test_eval_command_names_bad_options(tmp_path: Path):
    import typer
    from typer.testing import CliRunner

    from noisecraft.video.cli_eval import evaluate_command

    app = typer.Typer()
    app.command()(evaluate_command)
    result = CliRunner().invoke(app, ["--prompts", "0", "--model", str(tmp_path)])
    assert isinstance(result.exception, ValueError) and "--prompts" in str(result.exception)
    result = CliRunner().invoke(app, ["--model", str(tmp_path / "nothing")])
    assert isinstance(result.exception, FileNotFoundError)
