import numpy as np
import pytest
import torch

from noisecraft.shapes.world import BORDER, GAP, SIZES, ShapeObject, coverage
from noisecraft.video.world import (MOTIONS, MotionSpec, MovingShapesDataset, VideoPromptSpec, VideoWorldConfig,
                                    _scaled_coverage, analyze_clip, caption, check_clip, clip_from_spec,
                                    clip_to_tensor, describe, format_prompt, is_held_out, make_example, parse_prompt,
                                    render_clip)


def test_dataset_is_deterministic_and_in_range():
    config = VideoWorldConfig(frames=8)
    a, b = MovingShapesDataset(4, seed=3, config=config), MovingShapesDataset(4, seed=3, config=config)
    for i in range(2):
        x, y = a[i], b[i]
        assert x["caption"] == y["caption"] and torch.equal(x["video"], y["video"])
        assert x["video"].shape == (3, 8, 32, 32) and x["video"].dtype == torch.float32
        assert x["video"].min() >= -1 and x["video"].max() <= 1
    assert MovingShapesDataset(4, seed=4)[0]["caption"] != a[0]["caption"] or not torch.equal(
        MovingShapesDataset(4, seed=4)[0]["video"], a[0]["video"])


def test_frames_are_validated():
    with pytest.raises(ValueError):
        VideoWorldConfig(frames=7)
    with pytest.raises(ValueError):
        VideoWorldConfig(frames=17)
    with pytest.raises(ValueError):
        VideoWorldConfig(held_out_motions=[("red", "circle", "sideways")])


@pytest.mark.parametrize("frames", [8, 16])
def test_objects_stay_in_frame_and_apart(frames):
    config = VideoWorldConfig(frames=frames)
    for index in range(100):
        clip, _ = make_example(0, index, config)
        assert clip.frames == frames
        for t in range(frames):
            for o in clip.objects:
                side, (x, y) = o.side(t, frames), o.center(t)
                for c in (x, y):
                    assert BORDER + side / 2 - 1e-9 <= c <= 1 - BORDER - side / 2 + 1e-9
            if len(clip.objects) == 2:
                a, b = clip.objects
                (ax, ay), (bx, by) = a.center(t), b.center(t)
                assert max(abs(ax - bx), abs(ay - by)) >= (a.side(t, frames) + b.side(t, frames)) / 2 + GAP - 1e-9


def test_captions_parse_back_and_cover_every_motion():
    motions, kinds = set(), set()
    rng = np.random.default_rng(0)
    for index in range(300):
        clip, text = make_example(1, index)
        assert parse_prompt(text) == describe(clip)
        assert parse_prompt(caption(clip, rng)) == describe(clip)
        motions |= {o.motion for o in clip.objects}
        kinds.add(clip.kind)
    assert motions == set(MOTIONS) and kinds == {"single", "pair"}


def test_caption_examples():
    assert parse_prompt("a red circle moving right") == VideoPromptSpec((MotionSpec("red", "circle", "right"),))
    assert parse_prompt("a small blue square growing") == VideoPromptSpec(
        (MotionSpec("blue", "square", "grows", "small"),))
    spec = parse_prompt("a green triangle moving up and a yellow circle moving left")
    assert spec == VideoPromptSpec((MotionSpec("green", "triangle", "up"), MotionSpec("yellow", "circle", "left")))
    assert format_prompt(spec) == "a green triangle moving up and a yellow circle moving left"
    assert parse_prompt("a red circle") is None and parse_prompt("a red blob moving up") is None


def test_held_out_combinations_never_in_training():
    config = VideoWorldConfig()
    for index in range(500):
        clip, text = make_example(2, index, config)
        assert not is_held_out(describe(clip), config)
        for o in clip.objects:
            assert (o.colour, o.shape) not in config.held_out_pairs
            assert (o.colour, o.shape, o.motion) not in config.held_out_motions
    held = VideoPromptSpec((MotionSpec(*config.held_out_motions[0]),))
    assert is_held_out(held, config)
    clip = clip_from_spec(held, np.random.default_rng(0))  # still renderable, for evaluation
    assert check_clip(render_clip(clip), format_prompt(held))


@pytest.mark.parametrize("frames", [8, 16])
def test_analyser_recovers_motion_of_clean_clips(frames):
    config = VideoWorldConfig(frames=frames)
    count = 40 if frames == 8 else 15
    for index in range(count):
        clip, text = make_example(5, index, config)
        measured = analyze_clip(render_clip(clip))
        assert sorted((m.colour, m.shape, m.motion) for m in measured) == sorted(
            (o.colour, o.shape, o.motion) for o in clip.objects)
        assert check_clip(render_clip(clip), text)


def test_analyser_reads_tensors_and_every_motion():
    rng = np.random.default_rng(0)
    for motion in MOTIONS:
        spec = VideoPromptSpec((MotionSpec("green", "square", motion),))
        clip = clip_from_spec(spec, rng)
        video = clip_to_tensor(render_clip(clip))
        assert check_clip(video, format_prompt(spec))
        wrong = VideoPromptSpec((MotionSpec("green", "square", "still" if motion != "still" else "up"),))
        assert not check_clip(video, format_prompt(wrong))


def test_scaled_coverage_matches_the_shapes_renderer_at_named_sizes():
    for shape in ("circle", "square", "triangle"):
        for size, side in SIZES.items():
            obj = ShapeObject("red", shape, size, (0.43, 0.57))
            assert np.array_equal(coverage(obj, 32), _scaled_coverage(shape, obj.center, side, 32))
