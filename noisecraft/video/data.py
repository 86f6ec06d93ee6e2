"""Video training data: the moving-shapes world (clips, with shapes-world images beside them so images and videos
train together), or a folder of the user's own clips.

Every item is ``{"video": [3, T, H, W] in [-1, 1], "caption": str, "index": int}``; the world's items also carry
``{"image": [3, H, W], "image_caption": str}``, one still scene of the text-to-image world, which the loss denoises
as a one-frame clip (:func:`noisecraft.video.model.make_loss_fn`).

A clip folder holds GIF or MP4 files (found recursively, sorted by path; MP4 through ``imageio``). Captions come from
``metadata.jsonl`` (one ``{"file_name": "clips/a.gif", "text": "..."}`` per line, as for image folders) or a ``.txt``
file next to the clip. Every clip is decoded here, so an unreadable clip, one that is too short, or one whose frame
size differs from the others fails now, named in a one-line error; ``skip_bad`` leaves such clips out and lists them
in ``skipped`` (the training command prints one warning).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageSequence
from torch.utils.data import Dataset

from noisecraft.images.data import METADATA_FILE, DataError
from noisecraft.shapes.world import ShapesDataset, ShapesWorldConfig

from .world import MovingShapesDataset, VideoWorldConfig, clip_to_tensor

CLIP_EXTENSIONS = (".gif", ".mp4")


class WorldVideoDataset(Dataset):
    """``n`` moving-shapes clips, each paired with one shapes-world image (``images=True``); both rendered on the fly
    from ``(seed, index)`` alone."""

    def __init__(self, n: int, *, seed: int = 0, world: VideoWorldConfig | None = None,
                 image_world: ShapesWorldConfig | None = None, images: bool = True):
        self.clips = MovingShapesDataset(n, seed=seed, config=world)
        self.config = self.clips.config
        self.images = None
        if images:
            image_world = image_world or ShapesWorldConfig(resolution=self.config.resolution,
                                                           held_out_pairs=list(self.config.held_out_pairs))
            if image_world.resolution != self.config.resolution:
                raise DataError(f"the image world's resolution ({image_world.resolution}) differs from the clips' "
                                f"({self.config.resolution})")
            self.images = ShapesDataset(n, seed=seed + 1, config=image_world)
        self.shape = (3, self.config.frames, self.config.resolution, self.config.resolution)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.clips[index]
        if self.images is not None:
            image = self.images[index]
            item |= {"image": image["image"], "image_caption": image["caption"]}
        return item


def read_clip(path: str | Path) -> list[Image.Image]:
    """The RGB frames of a GIF (Pillow) or MP4 (imageio); a one-line error naming the file when it cannot be read."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".gif":
            with Image.open(path) as clip:
                frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(clip)]
        else:
            try:
                import av  # noqa: F401  (imageio's MP4 reader)
                import imageio.v3 as iio
            except ModuleNotFoundError as error:
                raise DataError(f"{path}: reading MP4 clips needs {error.name}; install it with: "
                                "pip install 'noisecraft[video]'") from None
            frames = [Image.fromarray(np.asarray(f)[..., :3]).convert("RGB") for f in iio.imiter(path)]
    except DataError:
        raise
    except Exception as error:  # any decoder's failure is the same fact for the user: this file is unreadable
        detail = str(error).splitlines()[0] if str(error) else "no detail"
        raise DataError(f"{path}: unreadable clip ({type(error).__name__}: {detail})") from None
    if not frames:
        raise DataError(f"{path}: the clip has no frames")
    return frames


def _captions(root: Path, files: list[Path]) -> dict[Path, str]:
    """Captions from ``metadata.jsonl`` or ``.txt`` sidecars; every clip must have one."""
    captions: dict[Path, str] = {}
    metadata = root / METADATA_FILE
    if metadata.is_file():
        for number, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                captions[(root / entry["file_name"]).resolve()] = str(entry["text"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataError(f"{metadata} line {number}: expected {{\"file_name\": ..., \"text\": ...}}, "
                                f"got {line[:80]!r}") from None
    for file in files:
        sidecar = file.with_suffix(".txt")
        if file.resolve() not in captions and sidecar.is_file():
            captions[file.resolve()] = sidecar.read_text(encoding="utf-8").strip()
    missing = [f for f in files if f.resolve() not in captions]
    if missing:
        raise DataError(f"{missing[0]} has no caption ({len(missing)} clip(s) without one): add a {METADATA_FILE} "
                        f'line {{"file_name": "{missing[0].relative_to(root)}", "text": ...}} or a '
                        f"{missing[0].with_suffix('.txt').name} next to it")
    return captions


class ClipFolderDataset(Dataset):
    """The user's clips under ``root`` as ``frames``-frame clips (the first ``frames`` of each); see the module
    docstring. All clips share one frame size (that of the first readable clip), which must be square."""

    def __init__(self, root: str | Path, *, frames: int = 8, skip_bad: bool = False):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"no such clip folder: {self.root}")
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise DataError(f"frames must be a positive integer, got {frames!r}")
        files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in CLIP_EXTENSIONS
                       and not any(part.startswith(".") for part in p.relative_to(self.root).parts))
        if not files:
            raise DataError(f"{self.root} holds no clips ({', '.join(CLIP_EXTENSIONS)} files)")
        captions = _captions(self.root, files)
        self.frames, self.skipped = frames, []
        self.clips: list[torch.Tensor] = []
        self.captions: list[str] = []
        self.files: list[Path] = []
        size = None
        for file in files:
            try:
                clip = read_clip(file)
                if len(clip) < frames:
                    raise DataError(f"{file}: has {len(clip)} frames; training takes {frames} (pass --frames "
                                    f"{len(clip)} or leave the clip out with --skip-bad)")
                if clip[0].size[0] != clip[0].size[1]:
                    raise DataError(f"{file}: frames are {clip[0].size[0]}x{clip[0].size[1]}; clips must be square")
                size = size or clip[0].size
                if clip[0].size != size or any(f.size != size for f in clip[:frames]):
                    odd = next(f.size for f in [clip[0], *clip[:frames]] if f.size != size)
                    raise DataError(f"{file}: frames are {odd[0]}x{odd[1]} but the other clips' are {size[0]}x"
                                    f"{size[1]}; resize it or leave it out with --skip-bad")
            except DataError as error:
                if not skip_bad:
                    raise
                self.skipped.append((str(file), str(error)))
                continue
            self.clips.append(clip_to_tensor(clip[:frames]))
            self.captions.append(captions[file.resolve()])
            self.files.append(file)
        if not self.clips:
            raise DataError(f"no readable clip in {self.root} ({len(self.skipped)} skipped: {self.skipped[0][1]})")
        self.shape = tuple(self.clips[0].shape)

    @property
    def report(self) -> str:
        """One line naming the clips left out with ``skip_bad`` (empty when none)."""
        if not self.skipped:
            return ""
        return (f"skipped {len(self.skipped)} bad clip(s) of {self.root}: "
                + "; ".join(reason for _, reason in self.skipped[:5]) + (" ..." if len(self.skipped) > 5 else ""))

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a clip folder of {len(self)} clips")
        index %= len(self)
        return {"video": self.clips[index], "caption": self.captions[index], "index": index}


def build_video_data(data: str, *, frames: int, seed: int = 0, num_examples: int = 200_000,
                     world: dict | None = None, image_world: dict | None = None, images: bool = True,
                     skip_bad: bool = False) -> Dataset:
    """``data="world"``: the moving-shapes world (``world``: VideoWorldConfig fields; ``image_world``: the shapes
    world of the joint images, e.g. the grown image model's); else a clip folder."""
    if data == "world":
        config = VideoWorldConfig.from_dict({**(world or {}), "frames": frames})
        image_config = ShapesWorldConfig.from_dict(image_world) if image_world else None
        return WorldVideoDataset(num_examples, seed=seed, world=config, image_world=image_config, images=images)
    if world:
        raise DataError(f"'world' settings only apply to data='world', not the clip folder {data!r}")
    return ClipFolderDataset(data, frames=frames, skip_bad=skip_bad)
