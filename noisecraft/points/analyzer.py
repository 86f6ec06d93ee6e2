"""A geometric analyser: which primitive, proportion and size a cloud shows, and why a cloud fails its prompt.

1. Centre the cloud on the middle of its robust bounding box (0.5 / 99.5 percentiles). With ``upright=True`` (the
   world's default orientation) z stays vertical and the cloud is turned about z onto the principal axes of its xy
   spread (the turn, in 3 degree steps, with the smallest robust xy bounding box; longer side along x);
   with ``upright=False`` all three axes come from PCA (then tall and wide cannot be told apart).
2. Read the half extents (a, b, c) along x, y, z.
3. Fit every primitive whose parameters follow from those extents: ellipsoid (radii a, b, c), box (half sides),
   cylinder, capsule and torus along each axis, cone along each axis with its apex either way. A fit's residual is
   the mean unsigned distance of the points to that surface, divided by the largest half extent. Near-ties
   (within 5%) go to the simpler shape, in the order sphere, box, cylinder, cone, capsule, torus; a capsule with
   half length / radius below 1.25 or a torus with tube / ring radius above 1.5 is a ball (a sphere).
4. The best fit (smallest residual) names the shape; the proportion follows from the fitted parameters (height /
   radius of a cylinder, cone or capsule, tube / ring radius of a torus, side ratios of a box or ellipsoid) with
   thresholds halfway between the world's classes (see :data:`THRESHOLDS`); a horizontal axis means "wide". The size
   is "small" when the farthest point is within 0.75 of the centre.

A cloud whose best residual is above ``max_residual`` (0.08) matches no primitive: its reason says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from noisecraft.points.world import parse_caption

THRESHOLDS = {
    "elongated": 1.5,     # ratio of two extents above which a shape is tall / wide
    "flat": 0.62,         # vertical / horizontal extent below which a shape is flat
    "thin_plate": 0.7,    # box: height / long side above which a narrow box is an upright plate ("thin")
    "axial_tall": 1.6,    # cylinder / cone: half height / radius above which it is tall
    "axial_flat": 0.55,   # cylinder / cone: half height / radius below which it is flat
    "capsule_tall": 2.6,  # capsule: half length / radius above which it is tall
    "torus_thin": 0.25,   # torus: tube / ring radius below which it is thin
    "torus_thick": 0.62,  # torus: tube / ring radius above which it is thick
    "small": 0.75,        # radius (farthest point from the centre) below which a shape is small
}
MAX_RESIDUAL = 0.08
SIMPLER_FIRST = ("sphere", "box", "cylinder", "cone", "capsule", "torus")
TIE_MARGIN = 1.05


@dataclass
class Analysis:
    shape: str | None
    proportion: str | None
    size: str
    residual: float
    extents: list[float]
    radius: float
    fits: dict[str, float] = field(default_factory=dict)  # best residual per shape
    axis: str = "z"
    ratio: float = 0.0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _align(points: np.ndarray, upright: bool) -> np.ndarray:
    centred = points - points.mean(0)
    if upright:
        xy = centred[:, :2]
        best = None
        for angle in np.deg2rad(np.arange(0.0, 90.0, 3.0)):  # the turn with the smallest robust xy box
            c, s = np.cos(angle), np.sin(angle)
            turned = xy @ np.array([[c, -s], [s, c]])
            span = np.percentile(turned, 99.5, axis=0) - np.percentile(turned, 0.5, axis=0)
            if best is None or span.prod() < best[0]:
                best = (span.prod(), turned[:, ::-1] if span[1] > span[0] else turned)
        aligned = np.concatenate([best[1], centred[:, 2:3]], axis=1)  # the longer horizontal side along x
    else:
        _, vectors = np.linalg.eigh(centred.T @ centred)
        aligned = centred @ vectors[:, ::-1]
    low, high = np.percentile(aligned, 0.5, axis=0), np.percentile(aligned, 99.5, axis=0)
    return aligned - (low + high) / 2


def _axial(p: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(distance from the axis, coordinate along it)."""
    others = [i for i in range(3) if i != axis]
    return np.linalg.norm(p[:, others], axis=1), p[:, axis]


def _segment_distance(q: np.ndarray, z: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    pa = np.stack([q - a[0], z - a[1]], 1)
    ba = np.array([b[0] - a[0], b[1] - a[1]])
    t = np.clip(pa @ ba / max(ba @ ba, 1e-12), 0, 1)
    return np.linalg.norm(pa - t[:, None] * ba, axis=1)


def surface_distances(p: np.ndarray, half: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    """Unsigned distances of ``p`` to every candidate surface built from the half extents ``half`` (key: (shape,
    axis), axis "x", "y", "z" or "z+"/"z-" for a cone's apex direction)."""
    out: dict[tuple[str, str], np.ndarray] = {}
    r = np.maximum(half, 1e-6)
    k0 = np.linalg.norm(p / r, axis=1)
    k1 = np.linalg.norm(p / r**2, axis=1)
    out[("sphere", "-")] = np.abs(k0 * (k0 - 1) / np.maximum(k1, 1e-12))
    q = np.abs(p) - half
    out[("box", "-")] = np.abs(np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0))
    names = "xyz"
    for axis in range(3):
        radial = float(np.mean([half[i] for i in range(3) if i != axis]))
        h = float(half[axis])
        d, z = _axial(p, axis)
        q2 = np.stack([d - radial, np.abs(z) - h], 1)
        out[("cylinder", names[axis])] = np.abs(np.linalg.norm(np.maximum(q2, 0), axis=1) + np.minimum(q2.max(1), 0))
        segment = max(h - radial, 0.0)
        out[("capsule", names[axis])] = np.abs(np.linalg.norm(np.stack([d, np.abs(z) - np.clip(np.abs(z), 0, segment)],
                                                                        1), axis=1) - radial)
        minor = h
        major = radial - minor
        if major > 0:
            out[("torus", names[axis])] = np.abs(np.linalg.norm(np.stack([d - major, z], 1), axis=1) - minor)
        for sign in (1, -1):
            zz = sign * z  # apex at +h
            base = _segment_distance(d, zz, (0.0, -h), (radial, -h))
            slant = _segment_distance(d, zz, (radial, -h), (0.0, h))
            out[("cone", names[axis] + ("+" if sign > 0 else "-"))] = np.minimum(base, slant)
    return out


def _proportion(shape: str, axis: str, half: np.ndarray, upright: bool) -> tuple[str, float]:
    a, b, c = (float(v) for v in half)
    t = THRESHOLDS
    if shape in ("sphere", "box"):
        long, short = max(a, b), max(min(a, b), 1e-6)
        if long / short > t["elongated"]:
            if shape == "box" and c / long > t["thin_plate"]:
                return "thin", long / short
            if c / long < t["flat"] and c < short / t["elongated"]:
                return "flat", c / long
            return "wide", long / short
        ratio = c / ((a + b) / 2)
        if ratio > t["elongated"]:
            return "tall", ratio
        if ratio < t["flat"]:
            return "flat", ratio
        return "plain", ratio
    index = "xyz".index(axis[0])
    radial = float(np.mean([half[i] for i in range(3) if i != index]))
    h = float(half[index])
    horizontal = index != 2
    if shape == "torus":
        ratio = h / max(radial - h, 1e-6)
        return ("thin" if ratio < t["torus_thin"] else "thick" if ratio > t["torus_thick"] else "plain"), ratio
    ratio = h / max(radial, 1e-6)
    if shape == "capsule":
        if ratio > t["capsule_tall"] or (horizontal and ratio > 1.3):
            return ("wide" if horizontal and upright else "tall"), ratio
        return "plain", ratio
    if ratio > t["axial_tall"]:
        return ("wide" if horizontal and upright else "tall"), ratio
    if ratio < t["axial_flat"]:
        return "flat", ratio
    return "plain", ratio


def analyze(points: np.ndarray, *, upright: bool = True, max_residual: float = MAX_RESIDUAL) -> Analysis:
    """The :class:`Analysis` of a cloud ``[N, 3]`` (see the module docstring)."""
    points = np.asarray(points, dtype=np.float64)[:, :3]
    if len(points) < 8 or not np.isfinite(points).all():
        return Analysis(None, None, "small", float("inf"), [0.0] * 3, 0.0,
                        reason="fewer than 8 finite points: nothing to analyse")
    radius = float(np.linalg.norm(points - points.mean(0), axis=1).max())
    size = "small" if radius < THRESHOLDS["small"] else "large"
    p = _align(points, upright)
    half = (np.percentile(p, 99.5, axis=0) - np.percentile(p, 0.5, axis=0)) / 2
    scale = float(half.max())
    if scale < 1e-6:
        return Analysis(None, None, size, float("inf"), half.tolist(), radius, reason="the cloud is a single point")
    residuals = {key: float(d.mean()) / scale for key, d in surface_distances(p, half).items()}
    (shape, axis), best = min(residuals.items(), key=lambda item: item[1])
    for simpler in SIMPLER_FIRST:  # near-ties go to the simpler shape (a sphere is also a very short capsule)
        if simpler == shape:
            break
        key, value = min(((k, v) for k, v in residuals.items() if k[0] == simpler), key=lambda item: item[1])
        if value <= best * TIE_MARGIN:
            (shape, axis), best = key, value
            break
    fits: dict[str, float] = {}
    for (name, _), value in residuals.items():
        fits[name] = min(fits.get(name, np.inf), value)
    proportion, ratio = _proportion(shape, axis, half, upright)
    if (shape == "capsule" and ratio < 1.25) or (shape == "torus" and ratio > 1.5):
        # a capsule with (almost) no cylinder part, a torus with (almost) no hole: a round ball
        shape, axis, best = "sphere", "-", residuals[("sphere", "-")]
        proportion, ratio = _proportion(shape, axis, half, upright)
    result = Analysis(shape, proportion, size, best, half.round(4).tolist(), radius,
                      {k: round(v, 4) for k, v in sorted(fits.items())}, axis, ratio)
    if best > max_residual:
        result.reason = (f"no primitive fits: the best, a {shape}, leaves a mean distance of {best:.3f} of the "
                         f"object's half size (at most {max_residual} accepted)")
        result.shape = result.proportion = None
    return result


def matches_prompt(result: Analysis, prompt: str, *, upright: bool = True) -> tuple[bool, list[str]]:
    """Whether ``result`` is what ``prompt`` asks for (shape, proportion, and size when the prompt names one),
    with the reasons it is not."""
    wanted = parse_caption(prompt)
    if wanted is None:
        return False, [f"the prompt {prompt!r} names no shape the analyser knows"]
    reasons = []
    if result.shape is None:
        return False, [result.reason]
    if result.shape != wanted["shape"]:
        reasons.append(f"asked for a {wanted['shape']}, got a {result.shape} (fit residuals: "
                       f"{wanted['shape']} {result.fits.get(wanted['shape'], float('nan')):.3f}, "
                       f"{result.shape} {result.residual:.3f})")
    else:
        same = {result.proportion, wanted["proportion"]} <= {"tall", "wide"} and not upright
        if result.proportion != wanted["proportion"] and not same:
            reasons.append(f"asked for {wanted['proportion']}, got {result.proportion} (ratio {result.ratio:.2f}, "
                           f"axis {result.axis})")
    if wanted["size"] is not None and result.size != wanted["size"]:
        reasons.append(f"asked for {wanted['size']}, got {result.size} (radius {result.radius:.2f}; small below "
                       f"{THRESHOLDS['small']})")
    return not reasons, reasons
