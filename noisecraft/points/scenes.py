"""Two-part scenes of the points world (the issue's second stage): "a small cone next to a sphere". Making one
(:func:`make_scene`, :func:`scene_caption`) lives in :mod:`noisecraft.points.world`, which mixes scenes into its
data; this module reads them: prompts, reference sets and the analyser's side.

A scene is two world objects (:func:`noisecraft.points.world.make_sample`) side by side. Each part has a relative
size, ``"small"`` (radius 0.55 of the other's) or ``"large"`` (both the same); a caption names a part's size only when
it is the small one of a pair, with probability ``size_word_prob``. Parts are built upright (or canonical / random,
as the world), placed on a random horizontal line through the origin with a gap of 0.15 x the larger radius between
their bounding spheres, and the whole scene is centred on its points' mean and scaled so that its farthest point is at
distance 0.9-1.0 from it (the world's "large" range). Each part gets half of the ``points``.

The analyser's side (:func:`analyze_scene`): the widest empty gap between the points' projections on a horizontal
direction (:func:`split_parts`) splits a scene into its parts, each part is analysed on its own
(:func:`noisecraft.points.analyzer.analyze`), and a part is "small" when its radius is below 0.75 of the other's.
A scene matches its prompt when the two parts match the two asked-for objects in either order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from noisecraft.points.world import GAP, RELATION, SMALL_FACTOR, make_scene, parse_caption, scene_caption

SMALL_BELOW = 0.75    # the analyser: a part is small below this fraction of the other part's radius


def parse_scene(text: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The two objects a scene prompt asks for (shape, proportion, relative size or None), or None when ``text``
    is not of the form "<object> next to <object>" with a known shape on each side."""
    lowered = " ".join(text.lower().split())
    if RELATION not in lowered:
        return None
    left, right = lowered.split(RELATION, 1)
    parts = parse_caption(left), parse_caption(right)
    return None if None in parts else (parts[0], parts[1])


def reference_scenes(prompt: str, count: int, *, points: int = 2048, seed: int = 1234,
                     orientation: str = "upright") -> np.ndarray:
    """``count`` world scenes ``[count, points, 3]`` of what the scene ``prompt`` asks for (a part named small is
    the small one; without size words either arrangement): the reference set of that prompt."""
    from noisecraft.points.world import _rng

    wanted = parse_scene(prompt)
    if wanted is None:
        raise ValueError(f"{prompt!r} is not a two-part prompt ('<object> next to <object>')")
    small = 0 if wanted[0]["size"] == "small" else 1 if wanted[1]["size"] == "small" else None
    return np.stack([make_scene((wanted[0]["shape"], wanted[0]["proportion"]),
                                (wanted[1]["shape"], wanted[1]["proportion"]), points=points,
                                orientation=orientation, rng=_rng(seed, i, prompt), small=small).points
                     for i in range(count)])


def split_parts(points: np.ndarray, step_degrees: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Split ``points [N, 3]`` into the two parts of a scene: over horizontal directions (``step_degrees`` apart),
    project the points and cut at the widest empty gap between consecutive projections; the direction with the
    widest gap wins (the parts' bounding spheres are apart along the line they were placed on)."""
    best = (-1.0, None)
    for angle in np.deg2rad(np.arange(0.0, 180.0, step_degrees)):
        along = points[:, 0] * np.cos(angle) + points[:, 1] * np.sin(angle)
        ordered = np.sort(along)
        gaps = np.diff(ordered)
        k = int(gaps.argmax())
        if gaps[k] > best[0]:
            best = (float(gaps[k]), along < (ordered[k] + ordered[k + 1]) / 2)
    left = best[1]
    return points[left], points[~left]


def analyze_scene(points: np.ndarray, *, upright: bool = True) -> list[dict[str, Any]]:
    """Per part (two): the analyser's shape and proportion, the part's radius, its relative size and reason."""
    from noisecraft.points.analyzer import analyze

    parts = split_parts(np.asarray(points, dtype=np.float64)[:, :3])
    radii = [float(np.linalg.norm(p - p.mean(0), axis=1).max()) if len(p) else 0.0 for p in parts]
    out = []
    for k, part in enumerate(parts):
        result = analyze(part, upright=upright)
        relative = "small" if radii[k] < SMALL_BELOW * radii[1 - k] else "large"
        out.append({"shape": result.shape, "proportion": result.proportion, "size": relative,
                    "radius": round(radii[k], 4), "points": len(part), "reason": result.reason})
    return out


def _part_reasons(found: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    if found["shape"] is None:
        return [found["reason"] or "a part matches no primitive"]
    reasons = []
    if found["shape"] != wanted["shape"]:
        reasons.append(f"asked for a {wanted['shape']}, got a {found['shape']}")
    elif found["proportion"] != wanted["proportion"]:
        reasons.append(f"asked for a {wanted['proportion']} {wanted['shape']}, got {found['proportion']}")
    if wanted["size"] == "small" and found["size"] != "small":
        reasons.append(f"asked for a small {wanted['shape']}, got one as large as the other part")
    return reasons


def matches_scene(parts: list[dict[str, Any]], prompt: str) -> tuple[bool, list[str]]:
    """Whether the two analysed parts are what the scene ``prompt`` asks for (either order), with reasons."""
    wanted = parse_scene(prompt)
    if wanted is None:
        return False, [f"{prompt!r} is not a two-part prompt ('<object> next to <object>')"]
    best: list[str] | None = None
    for a, b in ((0, 1), (1, 0)):
        reasons = [f"part {k + 1}: {r}" for k, (i, w) in enumerate(((a, wanted[0]), (b, wanted[1])))
                   for r in _part_reasons(parts[i], w)]
        if best is None or len(reasons) < len(best):
            best = reasons
    return not best, best


__all__ = ["GAP", "RELATION", "SMALL_FACTOR", "analyze_scene", "make_scene", "matches_scene", "parse_scene",
           "reference_scenes", "scene_caption", "split_parts"]
