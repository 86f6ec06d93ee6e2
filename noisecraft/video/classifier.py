"""A small video classifier of the moving-shapes world, and the Frechet distance in its features (FD-MSC).

FVD (Unterthiner et al., 2018) compares clips in the features of an I3D network trained on Kinetics; those weights
cannot be had offline, and Kinetics features say little about 32x32 shapes. Instead a tiny 3-D convolutional net is
trained in the project on the moving-shapes world (``benchmarks/video/train_classifier.py``) to say which colours,
shapes and motions a clip holds and how many objects it has; its penultimate layer (``features``) is the feature
space of **FD-MSC: the Frechet distance in the moving-shapes classifier's features**, computed with the project's one
Frechet distance (:func:`noisecraft.shapes.benchmark.frechet_distance`). It is meaningful only for clips of this
world; the weights ship in ``noisecraft/assets/video_classifier`` (safetensors + JSON config, < 1 MB).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from noisecraft.jsonconfig import from_dict
from noisecraft.shapes.analyzer import to_rgb_array
from noisecraft.shapes.benchmark import frechet_distance
from noisecraft.shapes.world import COLOURS, SHAPES
from noisecraft.training.checkpoint import atomic_write_bytes

from .world import MOTIONS, Clip

SHIPPED_CLASSIFIER = "assets/video_classifier"
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
# Multi-label heads: which colours, shapes and motions appear in the clip (any object), and one or two objects.
HEADS = {"colours": COLOURS, "shapes": SHAPES, "motions": MOTIONS}
COUNTS = (1, 2)


@dataclass
class ClassifierConfig:
    """``channels`` of the three 3x3x3 convolutions (stride 2 in space, 1 in time; each with group normalisation),
    the size of the penultimate ``features`` (FD-MSC's space), and the ``resolution`` clips are resized to."""

    channels: tuple[int, int, int] = (16, 32, 64)
    features: int = 32
    resolution: int = 32

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) != 3 or min(self.channels) < 1 or any(c % 4 for c in self.channels) or self.features < 1:
            raise ValueError(f"channels must be three positive multiples of 4 and features positive, got "
                             f"{self.channels}, {self.features}")
        if self.resolution < 8 or self.resolution % 8:
            raise ValueError(f"resolution must be a multiple of 8 (three stride-2 convolutions), got {self.resolution}")


class MovingShapesClassifier(nn.Module):
    """``[B, 3, T, H, W]`` clips in ``[-1, 1]`` (any ``T``) -> logits of every head; ``features`` is the penultimate
    layer. Temporal kernels see motion; pooling the last map over space and time (mean and max) makes every
    feature blind to where things are, so a shape or motion detector is learned once, not once per position."""

    def __init__(self, config: ClassifierConfig | None = None):
        super().__init__()
        self.config = config or ClassifierConfig()
        widths = (3, *self.config.channels)
        self.convs = nn.ModuleList(nn.Sequential(nn.Conv3d(a, b, 3, stride=(1, 2, 2), padding=1), nn.GroupNorm(4, b))
                                   for a, b in zip(widths[:-1], widths[1:]))
        self.project = nn.Linear(widths[-1] * 2, self.config.features)
        self.head = nn.Linear(self.config.features, sum(len(v) for v in HEADS.values()) + len(COUNTS))

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.ndim != 5 or clips.shape[1] != 3:
            raise ValueError(f"clips must be [B, 3, T, H, W] in [-1, 1], got {tuple(clips.shape)}")
        size = self.config.resolution
        if clips.shape[-2:] != (size, size):  # another model resolution: compare at the classifier's own
            b, c, t = clips.shape[:3]
            frames = clips.transpose(1, 2).reshape(b * t, c, *clips.shape[-2:])
            frames = F.interpolate(frames, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            clips = frames.reshape(b, t, c, size, size).transpose(1, 2)
        x = clips
        for conv in self.convs:
            x = F.silu(conv(x))
        pooled = torch.cat([x.mean(dim=(2, 3, 4)), x.amax(dim=(2, 3, 4))], dim=1)
        return F.silu(self.project(pooled))

    def forward(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.head(self.features(clips))
        out, start = {}, 0
        for name, labels in (*HEADS.items(), ("count", COUNTS)):
            out[name] = logits[:, start:start + len(labels)]
            start += len(labels)
        return out


def clip_targets(clips: Sequence[Clip]) -> dict[str, torch.Tensor]:
    """Multi-hot targets of each head (float ``[B, K]``) and the count class (long ``[B]``)."""
    targets = {name: torch.zeros(len(clips), len(labels)) for name, labels in HEADS.items()}
    for i, clip in enumerate(clips):
        for o in clip.objects:
            targets["colours"][i, COLOURS.index(o.colour)] = 1
            targets["shapes"][i, SHAPES.index(o.shape)] = 1
            targets["motions"][i, MOTIONS.index(o.motion)] = 1
    targets["count"] = torch.tensor([COUNTS.index(len(c.objects)) for c in clips])
    return targets


def classifier_loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Binary cross-entropy of the multi-label heads plus cross-entropy of the count, mean over the batch."""
    loss = F.cross_entropy(logits["count"], targets["count"])
    for name in HEADS:
        loss = loss + F.binary_cross_entropy_with_logits(logits[name], targets[name], reduction="none").sum(1).mean()
    return loss


def head_accuracy(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per head, the share of clips whose predicted set (sigmoid > 1/2) is exactly right; "all": every head."""
    right = {name: ((logits[name] > 0) == (targets[name] > 0.5)).all(dim=1) for name in HEADS}
    right["count"] = logits["count"].argmax(1) == targets["count"]
    every = torch.stack(list(right.values())).all(dim=0)
    return {**{k: float(v.float().mean()) for k, v in right.items()}, "all": float(every.float().mean())}


# ---------------------------------------------------------------------------------------------- saving / loading


def save_classifier(model: MovingShapesClassifier, folder: str | Path, info: dict | None = None) -> Path:
    """``config.json`` (the architecture and ``info``: how it was trained, its measured accuracy) and the weights,
    each written atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(folder / WEIGHTS_FILE, safetensors.torch.save(tensors, metadata={"format": "pt"}))
    record = {"kind": "video_classifier", "config": asdict(model.config), "info": info or {}}
    atomic_write_bytes(folder / CONFIG_FILE, (json.dumps(record, indent=2) + "\n").encode())
    return folder


def shipped_classifier() -> Path:
    return Path(str(resources.files("noisecraft") / SHIPPED_CLASSIFIER))


def load_classifier(folder: str | Path | None = None, device: str | torch.device = "cpu") -> MovingShapesClassifier:
    """The classifier in ``folder`` (default: the shipped one), in eval mode."""
    folder = Path(folder) if folder is not None else shipped_classifier()
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"no video classifier in {folder} (config.json + model.safetensors); train one with "
                                f"benchmarks/video/train_classifier.py")
    record = json.loads((folder / CONFIG_FILE).read_text())
    model = MovingShapesClassifier(from_dict(ClassifierConfig, record["config"]))
    model.load_state_dict(safetensors.torch.load_file(folder / WEIGHTS_FILE))
    return model.to(device).eval()


# ------------------------------------------------------------------------------------------------------ FD-MSC


def _frames_to_tensor(frames: Sequence) -> torch.Tensor:
    pixels = torch.from_numpy(np.stack([to_rgb_array(f) for f in frames])).float()  # [T, H, W, 3] in [0, 255]
    return pixels.permute(3, 0, 1, 2) / 127.5 - 1.0


@torch.no_grad()
def clip_features(model: MovingShapesClassifier, clips: Sequence, batch_size: int = 64) -> np.ndarray:
    """``[N, features]`` for clips given as ``[3, T, H, W]`` tensors in ``[-1, 1]`` or lists of frames (PIL images
    or uint8 ``[H, W, 3]`` arrays)."""
    tensors = [c if isinstance(c, torch.Tensor) else _frames_to_tensor(c) for c in clips]
    if not tensors:
        raise ValueError("no clips to describe")
    device = next(model.parameters()).device
    out = [model.features(torch.stack(tensors[i:i + batch_size]).to(device)).cpu().double()
           for i in range(0, len(tensors), batch_size)]
    return torch.cat(out).numpy()


def fd_msc(generated: Sequence, reference: Sequence, model: MovingShapesClassifier | None = None) -> float:
    """FD-MSC: the Frechet distance between Gaussians fitted to the moving-shapes classifier's features of
    ``generated`` and ``reference`` clips (same frame count within each set). 0 for identical sets; biased upwards
    for small sets, as FID is, so compare values measured with equal numbers of clips."""
    if len(generated) < 2 or len(reference) < 2:
        raise ValueError(f"FD-MSC needs at least 2 clips per set, got {len(generated)} and {len(reference)}")
    model = model or load_classifier()
    return frechet_distance(clip_features(model, generated), clip_features(model, reference))
