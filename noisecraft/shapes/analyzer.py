"""Read a shapes-world image back into objects, and decide whether it satisfies a prompt.

The detector inverts the renderer: every pixel is modelled as the background blended with one palette colour,
``p = bg + alpha * (c_k - bg)``. Fitting ``alpha`` per colour by least squares and keeping the colour with the
smallest residual handles anti-aliased edges exactly (a half-covered yellow pixel is not mistaken for green) and
tolerates the noise, blur and colour drift of generated images. Connected components of each colour are objects;
their shape comes from two scale-free moments of the soft (alpha-weighted) mask, compared with their exact values
for the rendered geometry (:data:`SHAPE_PROTOTYPES`), and their size from their area, so nothing is trained.
``matches`` then plays the role of GenEval's object-detector check (Ghosh et al., 2023): right objects, colours,
sizes and counts, and relation geometry.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from .world import BACKGROUND, COLOURS, PALETTE, SIZES, ObjectSpec, PromptSpec, Scene, parse_prompt

# Exact (skewness of y, normalised fourth moment E[x^2 y^2] / (E[x^2] E[y^2])) of the renderer's shapes, with x, y
# centred on the centroid and y pointing down. A square's x and y are independent (ratio 1); a disc's are not
# (ratio 2/3); an upright triangle is skewed towards its base (skewness -2 sqrt(2) / 5, ratio 4/5). Both are
# scale-free, and Gaussian blur leaves third moments and the square's independence intact, so they survive the
# soft edges of generated images far better than a thresholded mask would.
SHAPE_PROTOTYPES = {"square": (0.0, 1.0), "circle": (0.0, 2 / 3), "triangle": (-2 * math.sqrt(2) / 5, 4 / 5)}
FILL_RATIO = {"square": 1.0, "circle": math.pi / 4, "triangle": 0.5}  # area / bounding-box area
MAX_SHAPE_DISTANCE = 0.3  # farther than this from every prototype: not a shape of this world ("unknown")
SIZE_THRESHOLD = math.sqrt(SIZES["small"] * SIZES["large"])  # geometric mean of the two sides
MAX_EXTENT = 0.65  # a blob wider than this (fraction of the image) is no object of this world


@dataclass(frozen=True)
class DetectedObject:
    """An object found in an image: ``centroid`` is ``(x, y)`` and ``area`` a fraction of the image (as in
    :class:`~noisecraft.shapes.world.ShapeObject`, x right and y down); ``shape``/``size`` may be "unknown"."""

    colour: str
    shape: str
    size: str
    centroid: tuple[float, float]
    area: float


def to_rgb_array(image) -> np.ndarray:
    """``[H, W, 3]`` float64 in ``[0, 255]`` from a PIL image, a uint8 ``[H, W, 3]`` array, or a tensor ``[3, H, W]``
    in ``[-1, 1]`` (the diffusion models' convention)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64)
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"an image tensor must be [3, H, W] in [-1, 1], got shape {tuple(image.shape)}")
        pixels = (image.detach().to("cpu", torch.float64).clamp(-1, 1) + 1) * 127.5
        return pixels.permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"an image array must be [H, W, 3], got shape {image.shape}")
        if image.dtype != np.uint8:
            raise TypeError(f"an image array must be uint8 in [0, 255], got {image.dtype}; pass a tensor for [-1, 1]")
        return image.astype(np.float64)
    raise TypeError(f"expected a PIL image, a uint8 [H, W, 3] array or a [3, H, W] tensor, got {type(image).__name__}")


def colour_fit(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares blend of each palette colour with the background for every pixel.

    For colour ``c_k``: ``alpha_k = <p - bg, c_k - bg> / |c_k - bg|^2`` and ``residual_k = |p - bg - alpha_k (c_k -
    bg)|``. ``rgb`` is ``[..., 3]`` in ``[0, 255]``; returns ``alpha`` and ``residual`` of shape ``[K, ...]``.
    """
    background = np.array(BACKGROUND, dtype=np.float64)
    directions = np.array([PALETTE[c] for c in COLOURS], dtype=np.float64) - background  # [K, 3]
    offset = rgb.reshape(-1, 3) - background  # [N, 3]
    alpha = offset @ directions.T / (directions**2).sum(axis=1)  # [N, K]
    residual = np.linalg.norm(offset[:, None, :] - alpha[..., None] * directions, axis=-1)
    shape = (len(COLOURS), *rgb.shape[:-1])
    alpha, residual = alpha.T.reshape(shape), residual.T.reshape(shape)
    return alpha, residual


def label_pixels(alpha: np.ndarray, residual: np.ndarray, min_alpha: float = 0.5,
                 max_residual: float = 80.0) -> np.ndarray:
    """Palette index per pixel ``[H, W]`` (-1 = background) from :func:`colour_fit`: the best-fitting colour, if its
    blend weight is at least ``min_alpha`` (more object than background) and its residual at most ``max_residual``."""
    best = residual.argmin(axis=0)
    best_alpha = np.take_along_axis(alpha, best[None], axis=0)[0]
    best_residual = np.take_along_axis(residual, best[None], axis=0)[0]
    foreground = (best_alpha >= min_alpha) & (best_residual <= max_residual)
    # Noise can flip single pixels to a neighbouring hue: re-colour each object pixel by the majority colour
    # among the object pixels of its 3x3 neighbourhood (the object/background decision itself is kept).
    votes = np.stack([ndimage.uniform_filter(((best == k) & foreground).astype(np.float64), size=3, mode="constant")
                      for k in range(len(COLOURS))])
    return np.where(foreground, votes.argmax(axis=0), -1)


def shape_moments(weights: np.ndarray) -> tuple[float, tuple[float, float], float, float]:
    """(area, centroid (x, y), skewness of y, E[x^2 y^2] / (E[x^2] E[y^2])) of a soft mask ``[H, W]`` (pixel units,
    pixel centres at index + 0.5), weighting each pixel by how much of it the object covers. A mask without
    extent along x or y (a line) has NaN moments."""
    area = weights.sum()
    rows, cols = np.indices(weights.shape) + 0.5
    mean_x, mean_y = (weights * cols).sum() / area, (weights * rows).sum() / area
    x, y = cols - mean_x, rows - mean_y
    var_x, var_y = (weights * x**2).sum() / area, (weights * y**2).sum() / area
    with np.errstate(divide="ignore", invalid="ignore"):
        skew_y = (weights * y**3).sum() / area / var_y**1.5
        ratio = (weights * x**2 * y**2).sum() / area / (var_x * var_y)
    return float(area), (float(mean_x), float(mean_y)), float(skew_y), float(ratio)


def classify_shape(skew_y: float, ratio: float) -> str:
    """Nearest of :data:`SHAPE_PROTOTYPES`, or "unknown" if none is within ``MAX_SHAPE_DISTANCE``."""
    if not (math.isfinite(skew_y) and math.isfinite(ratio)):
        return "unknown"
    distances = {name: math.hypot(skew_y - s, ratio - r) for name, (s, r) in SHAPE_PROTOTYPES.items()}
    shape = min(distances, key=distances.get)
    return shape if distances[shape] <= MAX_SHAPE_DISTANCE else "unknown"


def analyze(image, min_alpha: float = 0.5, max_residual: float = 80.0, min_area: float = 0.008) -> list[DetectedObject]:
    """Objects in ``image`` (PIL, uint8 array or ``[3, H, W]`` tensor in ``[-1, 1]``), sorted by position.

    Each palette colour's pixels are split into 4-connected components (objects of one colour never touch in
    this world); holes are filled and components under ``min_area`` (fraction of the image) are dropped as noise.
    """
    rgb = to_rgb_array(image)
    height, width = rgb.shape[:2]
    alpha, residual = colour_fit(rgb)
    labels = label_pixels(alpha, residual, min_alpha=min_alpha, max_residual=max_residual)
    found = []
    for k, colour in enumerate(COLOURS):
        components, _ = ndimage.label(ndimage.binary_fill_holes(labels == k))
        for index, box in enumerate(ndimage.find_objects(components), start=1):
            box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)  # room for a 1-pixel rim
            mask = components[box] == index
            if mask.sum() < min_area * height * width:
                continue
            # Soft mask: the component and its 1-pixel rim (the anti-aliased or blurred edge), weighted by the
            # colour's blend weight, ignoring pixels that belong to objects of other colours.
            rim = ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool)) & np.isin(labels[box], (k, -1))
            weights = np.where(rim | mask, np.clip(alpha[k][box], 0.0, 1.0), 0.0)
            area, (x, y), skew_y, ratio = shape_moments(weights)
            shape = classify_shape(skew_y, ratio)
            # side of the bounding box implied by the area, for the detected shape (a square if unknown)
            side = math.sqrt(area / FILL_RATIO.get(shape, 1.0) / (height * width))
            size = "unknown" if side > MAX_EXTENT else ("small" if side < SIZE_THRESHOLD else "large")
            centroid = ((x + box[1].start) / width, (y + box[0].start) / height)
            found.append(DetectedObject(colour, shape, size, centroid, area / (height * width)))
    return sorted(found, key=lambda o: (o.centroid[0], o.centroid[1]))


def objects_of(scene: Scene) -> list[DetectedObject]:
    """What a perfect detector would report for ``scene`` (ground truth in the analyzer's terms)."""
    return [DetectedObject(o.colour, o.shape, o.size, o.center, FILL_RATIO[o.shape] * SIZES[o.size] ** 2)
            for o in scene.objects]


def relation_holds(relation: str, a: tuple[float, float], b: tuple[float, float], ratio: float = 1.0) -> bool:
    """Whether an object centred at ``a`` is ``relation`` of one centred at ``b`` (``(x, y)``, y down): ``b`` lies
    in the relation's direction and the offset along the relation axis exceeds ``ratio`` times the offset across
    it (training scenes keep it above 2x, so ``ratio=1`` leaves room for imprecise generations)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    along, across = {"left of": (dx, dy), "right of": (-dx, dy), "above": (dy, dx), "below": (-dy, dx)}[relation]
    return along > 0 and along > ratio * abs(across)


# Why an image fails its prompt, in the order :func:`diagnose` tests them.
FAILURES = ("count", "identity", "binding", "size", "relation")


def _identity_fits(want: ObjectSpec, got: DetectedObject) -> bool:
    return got.colour == want.colour and got.shape == want.shape


def diagnose(spec: PromptSpec | None, objects: Sequence[DetectedObject], ratio: float = 1.0) -> str | None:
    """``None`` if the detected ``objects`` are exactly what ``spec`` asks for, else the first reason that applies:

    ``"count"``: more or fewer objects than requested (also an unparsable prompt); ``"identity"``: a requested
    colour or shape is missing; ``"binding"``: the right colours and the right shapes, paired wrongly (a red square
    and a blue circle for "a red circle and a blue square"); ``"size"``: the right objects at a wrong size;
    ``"relation"``: the right objects, placed wrongly. Objects are assigned to the request by trying every order.
    """
    if spec is None:
        return "count"
    wanted = [o for o in spec.objects for _ in range(o.count)]
    if len(objects) != len(wanted):
        return "count"
    orders = [order for order in itertools.permutations(objects)  # at most 6 objects: brute force is cheap
              if all(_identity_fits(w, o) for w, o in zip(wanted, order))]
    if not orders:
        same_attributes = all(sorted(getattr(o, name) for o in objects) == sorted(getattr(w, name) for w in wanted)
                              for name in ("colour", "shape"))
        return "binding" if same_attributes else "identity"
    orders = [order for order in orders if all(w.size is None or o.size == w.size for w, o in zip(wanted, order))]
    if not orders:
        return "size"
    if spec.relation is None or any(relation_holds(spec.relation, order[0].centroid, order[1].centroid, ratio)
                                    for order in orders):
        return None
    return "relation"


def matches(spec: PromptSpec | None, objects: Sequence[DetectedObject], ratio: float = 1.0) -> bool:
    """Whether the detected ``objects`` are exactly what ``spec`` asks for: as many objects as requested, each
    with the requested colour, shape and (if given) size, nothing else, and the relation if there is one.
    An unparsable prompt (``spec is None``) matches nothing."""
    return diagnose(spec, objects, ratio) is None


def check(image, prompt: str) -> bool:
    """Whether ``image`` satisfies ``prompt`` (written in the world's caption grammar)."""
    return matches(parse_prompt(prompt), analyze(image))
