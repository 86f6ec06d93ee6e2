"""Temporal consistency of a clip: does each object keep its identity from frame to frame, and how much does the
picture change where nothing moves (flicker)?

Identity: objects are followed by position alone (each frame's detections matched to the tracks' last positions by
minimum total distance, within ``MAX_JUMP``), and a track must keep one (colour, shape) throughout. Two tracks that
exchange identities in one frame are an ``identity_swap`` (a red circle and a blue square trading places); any other
change of a track's colour or shape is an ``identity_change`` (a circle turning into a square).

Flicker: the mean absolute frame-to-frame change, over pixels and channels in ``[0, 1]`` units, of the pixels that
belong to no object in either frame (the objects' masks: the analyser's object pixels grown by one pixel, which
covers their anti-aliased rims). A rendered clip of the world has exactly 0: its background never changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from noisecraft.shapes.analyzer import DetectedObject, colour_fit, label_pixels, to_rgb_array

MAX_JUMP = 0.2  # fraction of the frame a tracked object may move between frames (the world moves <= 0.065)
IDENTITY_FAILURES = ("identity_swap", "identity_change")


@dataclass(frozen=True)
class IdentityCheck:
    """``kept``: every track keeps its (colour, shape); ``reasons``: the kinds of failure seen; ``tracks``: how
    many position tracks the clip's objects formed."""

    kept: bool
    reasons: tuple[str, ...]
    tracks: int


def _match(previous: list[tuple[float, float]], current: list[tuple[float, float]]) -> list[tuple[int, int]]:
    """Pairs (track, detection) of minimum total distance (the assignment problem), each closer than
    ``MAX_JUMP``."""
    if not previous or not current:
        return []
    distance = np.linalg.norm(np.array(previous)[:, None, :] - np.array(current)[None, :, :], axis=-1)
    rows, cols = linear_sum_assignment(distance)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if distance[i, j] <= MAX_JUMP]


def position_tracks(detections: Sequence[Sequence[DetectedObject]]) -> list[list[tuple[int, DetectedObject]]]:
    """Tracks of ``(frame, detection)``, following objects by position only (a track resumes from its last seen
    position after a frame where it was missed)."""
    tracks: list[list[tuple[int, DetectedObject]]] = []
    for t, found in enumerate(detections):
        found = list(found)
        pairs = _match([track[-1][1].centroid for track in tracks], [o.centroid for o in found])
        matched = {j for _, j in pairs}
        for i, j in pairs:
            tracks[i].append((t, found[j]))
        tracks += [[(t, o)] for j, o in enumerate(found) if j not in matched]
    return tracks


def identity_check(detections: Sequence[Sequence[DetectedObject]]) -> IdentityCheck:
    """Whether each object keeps its colour and shape over the clip (see the module docstring)."""
    tracks = position_tracks(detections)
    changes: dict[int, list[tuple[tuple[str, str], tuple[str, str]]]] = {}  # frame -> (before, after) identities
    for track in tracks:
        for (_, a), (t, b) in zip(track, track[1:]):
            if (a.colour, a.shape) != (b.colour, b.shape):
                changes.setdefault(t, []).append(((a.colour, a.shape), (b.colour, b.shape)))
    reasons = set()
    for frame_changes in changes.values():
        for before, after in frame_changes:
            swapped = (after, before) in frame_changes
            reasons.add("identity_swap" if swapped else "identity_change")
    return IdentityCheck(not reasons, tuple(r for r in IDENTITY_FAILURES if r in reasons), len(tracks))


def object_masks(frames: Sequence) -> np.ndarray:
    """``[T, H, W]`` bool: the pixels the analyser assigns to an object (any palette colour), grown by one pixel."""
    masks = []
    for frame in frames:
        alpha, residual = colour_fit(to_rgb_array(frame))
        masks.append(ndimage.binary_dilation(label_pixels(alpha, residual) >= 0, structure=np.ones((3, 3), bool)))
    return np.stack(masks)


def flicker(frames: Sequence, masks: np.ndarray | None = None) -> float:
    """Mean ``|x_{t+1} - x_t|`` (channels in ``[0, 1]``) over the pixels outside ``masks[t] | masks[t+1]``, pooled
    over every pair of consecutive frames; NaN when no such pixel exists (or the clip has one frame)."""
    pixels = np.stack([to_rgb_array(f) for f in frames]) / 255.0  # [T, H, W, 3]
    masks = object_masks(frames) if masks is None else np.asarray(masks, dtype=bool)
    if masks.shape != pixels.shape[:3]:
        raise ValueError(f"masks must be [T, H, W] = {pixels.shape[:3]}, got {masks.shape}")
    outside = ~(masks[1:] | masks[:-1])  # [T-1, H, W]
    if not outside.any():
        return float("nan")
    change = np.abs(pixels[1:] - pixels[:-1]).mean(axis=-1)  # [T-1, H, W]
    return float(change[outside].mean())
