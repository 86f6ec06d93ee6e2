"""Video training data: world clips with still images beside them, the user's clip folders (captions from
metadata.jsonl or sidecars; unreadable, short and odd-sized clips named, --skip-bad), the joint loss and the
training config's one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from noisecraft.images.data import DataError
from noisecraft.video.data import ClipFolderDataset, build_video_data
from noisecraft.video.io import gif_bytes
from noisecraft.video.training import check_config


def _gif(path, frames: int = 8, size: int = 16, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    clip = []
    for t in range(frames):
        frame = Image.new("RGB", (size, size), (20, 20, 30))
        frame.paste(colour, (t, 4, t + 4, 8))
        clip.append(frame)
    path.write_bytes(gif_bytes(clip))
    return clip


def test_world_items_pair_a_clip_with_a_still_image():
    data = build_video_data("world", frames=8, num_examples=4, world={"resolution": 16})
    item = data[1]
    assert item["video"].shape == (3, 8, 16, 16) and item["image"].shape == (3, 16, 16)
    assert item["video"].min() >= -1 and item["video"].max() <= 1
    assert isinstance(item["caption"], str) and isinstance(item["image_caption"], str)
    assert torch.equal(data[1]["video"], item["video"])  # a pure function of (seed, index)
    assert "image" not in build_video_data("world", frames=8, num_examples=4, world={"resolution": 16},
                                           images=False)[0]


def test_clip_folder_reads_gifs_with_captions_from_metadata_and_sidecars(tmp_path):
    first = _gif(tmp_path / "a" / "one.gif")
    _gif(tmp_path / "two.gif", frames=10, colour=(30, 30, 200))
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "a/one.gif", "text": "a red square"}) + "\n")
    (tmp_path / "two.txt").write_text("a blue square\n")
    data = ClipFolderDataset(tmp_path, frames=8)
    assert len(data) == 2 and data.captions == ["a red square", "a blue square"]
    assert data[0]["video"].shape == (3, 8, 16, 16) and data[1]["video"].shape == (3, 8, 16, 16)
    expected = torch.tensor(list(first[3].getpixel((4, 5))), dtype=torch.float32) / 127.5 - 1
    assert torch.allclose(data[0]["video"][:, 3, 5, 4], expected)


def test_bad_clips_are_named_and_skip_bad_leaves_them_out(tmp_path):
    _gif(tmp_path / "good.gif")
    (tmp_path / "good.txt").write_text("a red square")
    (tmp_path / "broken.gif").write_bytes(b"GIF89a not really")
    (tmp_path / "broken.txt").write_text("broken")
    with pytest.raises(DataError, match=r"broken\.gif: unreadable clip"):
        ClipFolderDataset(tmp_path)
    data = ClipFolderDataset(tmp_path, skip_bad=True)
    assert len(data) == 1 and "broken.gif" in data.report and "\n" not in data.report

    (tmp_path / "broken.gif").unlink()
    _gif(tmp_path / "zbig.gif", size=24)
    (tmp_path / "zbig.txt").write_text("big")
    with pytest.raises(DataError, match=r"zbig\.gif: frames are 24x24 but the other clips' are 16x16"):
        ClipFolderDataset(tmp_path)
    _gif(tmp_path / "short.gif", frames=3)
    (tmp_path / "short.txt").write_text("short")
    assert len(ClipFolderDataset(tmp_path, skip_bad=True)) == 1
    with pytest.raises(DataError, match=r"short\.gif: has 3 frames; training takes 8"):
        ClipFolderDataset(tmp_path)


def test_missing_captions_and_folders_are_one_line_errors(tmp_path):
    _gif(tmp_path / "clip.gif")
    with pytest.raises(DataError, match="clip.gif has no caption"):
        ClipFolderDataset(tmp_path)
    with pytest.raises(DataError, match="no such clip folder"):
        ClipFolderDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no clips"):
        ClipFolderDataset(tmp_path / "empty")


def test_joint_loss_covers_clips_and_images():
    from noisecraft.video.model import VideoDiffusionModel, make_loss_fn
    from noisecraft.video.training import build_spec

    config = check_config({"out_dir": "unused", "grow_from": None, "preset": "tiny", "resolution": 16,
                           "text_encoder": {"name": "learned", "dim": 16, "layers": 1, "heads": 2}})
    data = build_video_data("world", frames=8, num_examples=4, world={"resolution": 16})
    spec = build_spec(config, data)
    model = VideoDiffusionModel(spec)
    batch = torch.utils.data.default_collate([data[i] for i in range(3)])
    losses = make_loss_fn(spec)(model, batch, torch.Generator().manual_seed(0))
    assert losses.shape == (6,) and torch.isfinite(losses).all()
    losses.mean().backward()
    assert all(p.grad is not None for p in model.net.temporal_parameters())


def test_training_config_errors():
    with pytest.raises(ValueError, match="unknown video training option"):
        check_config({"out_dir": "x", "frame": 8})
    with pytest.raises(ValueError, match="needs 'out_dir'"):
        check_config({})
    with pytest.raises(ValueError, match="keeps its network and text encoder; remove preset"):
        check_config({"out_dir": "x", "preset": "tiny"})
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        check_config({"out_dir": "x", "grow_from": "/nonexistent"})
    with pytest.raises(ValueError, match="freeze_spatial"):
        check_config({"out_dir": "x", "grow_from": None, "freeze_spatial": True})
    with pytest.raises(ValueError, match="frames .* above max_frames"):
        check_config({"out_dir": "x", "frames": 20})


def test_mp4_clips_are_read_through_pyav(tmp_path):
    pytest.importorskip("av")
    from noisecraft.video.io import mp4_bytes

    frames = _gif(tmp_path / "src" / "clip.gif", frames=8)
    mp4 = mp4_bytes(frames)
    assert mp4 == mp4_bytes(frames)  # same frames, same bytes
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "clip.mp4").write_bytes(mp4)
    (tmp_path / "clips" / "clip.txt").write_text("a red square moving right")
    data = ClipFolderDataset(tmp_path / "clips")
    assert data[0]["video"].shape == (3, 8, 16, 16)
    expected = torch.tensor(list(frames[2].getpixel((3, 5))), dtype=torch.float32) / 127.5 - 1
    assert torch.allclose(data[0]["video"][:, 2, 5, 3], expected, atol=0.15)  # H.264 is lossy
