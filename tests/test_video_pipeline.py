"""The video pipeline on a tiny model: clips as PIL frames, determinism to the byte, GIFs with every frame and the
parameters, frames from 1 to the model's maximum, composition, the CLI's one-line errors; a model grown from the
shipped text-to-image model equals it frame by frame before training."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

import noisecraft
from noisecraft.protocol import ParameterError
from noisecraft.video.io import gif_bytes, read_gif
from noisecraft.video.pipeline import VideoPipeline, motion_words_note
from noisecraft.video.training import make_tiny_model

SHIPPED_IMAGE = Path(__file__).resolve().parents[1] / "noisecraft" / "assets" / "shapes_t2i"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("video") / "model")


def _hashes(files) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_items_are_clips_of_rgb_frames_and_same_seed_same_bytes(tiny, tmp_path):
    pipeline = noisecraft.load(tiny)
    assert isinstance(pipeline, VideoPipeline)
    request = {"prompt": "a red circle moving right", "frames": 8, "steps": 2, "batch": 2, "guidance": 2.0}
    first = pipeline.generate(request, seed=3)
    assert len(first.items) == 2 and all(len(clip) == 8 for clip in first.items)
    assert all(isinstance(f, Image.Image) and f.mode == "RGB" and f.size == (16, 16) for c in first.items for f in c)
    files = pipeline.save_outputs(first, tmp_path / "a")
    again = pipeline.save_outputs(pipeline.generate(request, seed=3), tmp_path / "b")
    assert _hashes(files) == _hashes(again)
    import importlib.util

    suffixes = (".gif", "_frames.png") + ((".mp4",) if importlib.util.find_spec("av") else ())  # MP4 needs PyAV
    assert sorted(f.name for f in files) == sorted([f"clip_{i:04d}{s}" for i in range(2) for s in suffixes]
                                                   + ["generation.json"])
    frames, comment = read_gif(tmp_path / "a" / "clip_0001.gif")
    assert len(frames) == 8 and frames[0].size == (16, 16)
    assert comment["seed"] == 4 and comment["prompt"] == request["prompt"] and comment["cfg_scale"] == 2.0
    assert [f.tobytes() for f in frames] == [f.tobytes() for f in first.items[1]]  # GIF keeps pixels
    sidecar = json.loads((tmp_path / "a" / "generation.json").read_text())
    assert sidecar["parameters"]["seed"] == 3 and [c["seed"] for c in sidecar["clips"]] == [3, 4]
    assert "matches_prompt" in sidecar["clips"][0]["analysis"]
    strip = Image.open(tmp_path / "a" / "clip_0000_frames.png")
    assert strip.size == (16 * 8, 16) and "seed" in strip.info["noisecraft"]


def test_clip_does_not_depend_on_the_batch(tiny):
    pipeline = noisecraft.load(tiny)
    request = {"prompt": "a blue square growing", "steps": 2, "sampler": "euler"}
    one = pipeline.generate(request | {"batch": 1}, seed=5).items[0]
    two = pipeline.generate(request | {"batch": 2}, seed=4).items[1]
    diff = max(abs(a - b) for fa, fb in zip(one, two) for a, b in zip(fa.tobytes(), fb.tobytes()))
    assert diff <= 1  # batched matmuls may round differently in the last bit


@pytest.mark.parametrize("frames", [1, 3, 16])
def test_frame_counts_from_one_to_the_maximum(tiny, frames):
    pipeline = noisecraft.load(tiny)
    clips = pipeline.generate({"prompt": "a red circle", "frames": frames, "steps": 1}, seed=0).items
    assert len(clips[0]) == frames


def test_bad_requests_name_the_parameter(tiny):
    pipeline = noisecraft.load(tiny)
    for bad, name in (({"frames": 0}, "frames"), ({"frames": 17}, "frames"), ({"batch": 0}, "batch"),
                      ({"prompt": "a red circle AND"}, "prompt"), ({"sampler": "nope"}, "sampler")):
        with pytest.raises(ParameterError, match=f"'{name}'"):
            pipeline.generate({"prompt": "a red circle", "steps": 1} | bad)


def test_composition_and_negative_prompt_use_more_evaluations(tiny):
    pipeline = noisecraft.load(tiny)
    base = {"prompt": "a red circle moving up", "steps": 2, "sampler": "euler", "guidance": 2.0}
    plain = pipeline.generate(base, seed=0).parameters
    composed = pipeline.generate(base | {"prompt": "a red circle moving up AND a blue square:-0.5"}, seed=0).parameters
    negative = pipeline.generate(base | {"negative_prompt": "a green triangle"}, seed=0).parameters
    assert plain["nfe"] == 4 and composed["nfe"] == 6 and negative["nfe"] == 4
    assert composed["concepts"] == [["a red circle moving up", 1.0], ["a blue square", -0.5]]
    assert negative["negative_prompt"] == "a green triangle"


def test_unknown_motion_words_are_warned(tiny):
    assert motion_words_note("a red circle moving right") is None
    assert motion_words_note("a red circle") is None
    assert "moving left" in motion_words_note("a red circle moving sideways")
    pipeline = noisecraft.load(tiny)
    with pytest.warns(UserWarning, match="sideways"):  # the learned encoder's warning names the word
        pipeline.generate({"prompt": "a red circle moving sideways", "steps": 1}, seed=0)


def test_gif_bytes_are_deterministic_and_scaled():
    frames = [Image.new("RGB", (4, 4), (10 * i, 0, 0)) for i in range(5)]
    assert gif_bytes(frames, {"seed": 1}) == gif_bytes(frames, {"seed": 1})
    with Image.open(__import__("io").BytesIO(gif_bytes(frames, scale=3))) as gif:
        assert gif.size == (12, 12) and gif.n_frames == 5


def test_cli_generate_and_one_line_errors(tiny, tmp_path):
    from typer.testing import CliRunner

    from noisecraft.video.cli import app  # what `noisecraft video` mounts; main() prints errors as one line

    runner = CliRunner()
    ok = runner.invoke(app, ["generate", "a red circle moving left", "--model", str(tiny), "--steps", "1",
                             "--batch", "2", "--frames", "4", "-o", str(tmp_path / "out")])
    assert ok.exit_code == 0, ok.output
    assert len(read_gif(tmp_path / "out" / "clip_0001.gif")[0]) == 4
    for args, expected in ((["--frames", "0"], "--frames must be at least 1"),
                           (["--frames", "99"], "--frames 99 is outside this model's range 1-16"),
                           (["--batch", "0"], "--batch"),
                           (["--model", str(tmp_path / "missing")], "no such model folder")):
        result = runner.invoke(app, ["generate", "a red circle", "--model", str(tiny), *args])
        assert isinstance(result.exception, (ValueError, FileNotFoundError)), result.output
        assert expected in str(result.exception) and "\n" not in str(result.exception)


def test_grown_model_equals_the_image_model_frame_by_frame_at_init():
    if not (SHIPPED_IMAGE / "model.safetensors").is_file():
        pytest.skip("the shipped text-to-image model is not in this checkout")
    from noisecraft.images.pipeline import ImagePipeline
    from noisecraft.video.data import build_video_data
    from noisecraft.video.model import VideoDiffusionModel, grow_from_image_model
    from noisecraft.video.training import build_spec, check_config

    config = check_config({"out_dir": "unused", "num_examples": 2})
    spec = build_spec(config, build_video_data("world", frames=8, num_examples=2, world={"resolution": 32}))
    video = grow_from_image_model(VideoDiffusionModel(spec), SHIPPED_IMAGE).eval()
    image = ImagePipeline.load(SHIPPED_IMAGE).model
    torch.manual_seed(0)
    x, sigma = torch.randn(1, 3, 3, 32, 32), torch.tensor([2.5])
    context, mask = video.encode_text(["a red circle moving right"])
    with torch.no_grad():
        clip = video(x, sigma, context=context, context_mask=mask)
        frames = torch.stack([image(x[:, :, t], sigma, context=context, context_mask=mask) for t in range(3)], 2)
    assert torch.allclose(clip, frames, atol=1e-5)


def test_cli_train_from_scratch_and_its_errors(tmp_path):
    from typer.testing import CliRunner

    from noisecraft.video.cli import app

    runner = CliRunner()
    out = tmp_path / "run"
    ok = runner.invoke(app, ["train", "--scratch", "--preset", "tiny", "--text-encoder", "learned", "--resolution",
                             "16", "--steps", "1", "--batch-size", "1", "--no-joint-images", "-o", str(out)])
    assert ok.exit_code == 0, (ok.output, ok.exception)
    assert noisecraft.load(out).spec.training["joint_images"] is False
    for args, expected in ((["--preset", "tiny"], "add --scratch"),
                           (["--scratch", "--grow-from", str(tmp_path)], "contradict"),
                           (["--grow-from", str(tmp_path / "none")], "not a model folder"),
                           (["--scratch", "--freeze-spatial"], "freeze_spatial")):
        result = runner.invoke(app, ["train", "-o", str(tmp_path / "x"), *args])
        assert isinstance(result.exception, (ValueError, FileNotFoundError)), result.output
        assert expected in str(result.exception) and "\n" not in str(result.exception)


def test_shipped_video_model_loads_and_generates():
    from noisecraft.video.cli import DEFAULT_MODEL

    if not (DEFAULT_MODEL / "model.safetensors").is_file():
        pytest.skip("the shipped video model is not in this checkout")
    pipeline = noisecraft.load(DEFAULT_MODEL)
    assert pipeline.spec.grown_from == "noisecraft/assets/shapes_t2i" and pipeline.spec.frames == 8
    clips = pipeline.generate({"prompt": "a red circle moving right", "frames": 2, "steps": 1}, seed=0).items
    assert len(clips) == 1 and len(clips[0]) == 2 and clips[0][0].size == (32, 32)
