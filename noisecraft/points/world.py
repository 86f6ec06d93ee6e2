"""The procedural "points" world: single primitives (sphere, box/cube, cylinder, cone, torus, capsule) with a
proportion (tall, flat, wide, thin, thick or plain) and a size, built as trimesh meshes and sampled as N surface
points with normals, plus a caption ("a tall cylinder", "a small flat box", "a thin torus").

Frame: z is up. Every shape is built in its canonical frame (dimensions below), centred so that its surface
points' mean is 0 (the centre of mass of the cloud), and scaled so that its farthest surface point is at distance
``radius`` from the centre (``small``: 0.45-0.6, ``large``: 0.85-1.0; the clouds lie in the unit ball).
Orientation (``WorldConfig.orientation``): ``"upright"`` (default: a random turn about z, so tall / flat / wide stay
meaningful), ``"canonical"`` (no rotation) or ``"random"`` (uniform over SO(3); then tall and wide look alike).

Proportions, as ratios of the canonical dimensions (each dimension jittered by a factor in [0.9, 1.1]):

==========  ==============================================================================================
sphere      plain: radii (1, 1, 1); flat: (1, 1, 0.4); tall: (0.5, 0.5, 1); wide: (1, 0.5, 0.5)
box         plain ("a cube"): half sides (1, 1, 1); tall: (0.45, 0.45, 1); flat: (1, 1, 0.3);
            wide: (1, 0.45, 0.45); thin: (1, 0.15, 1) (an upright plate)
cylinder    plain: radius 1, half height 1; tall: r 0.4, h 1; flat: r 1, h 0.25; wide: r 0.4, half length 1 along x
cone        plain: base radius 1, height 2; tall: r 0.45, height 2; flat: r 1, height 0.6 (apex up)
torus       plain: major 0.7, tube 0.3; thin: major 0.85, tube 0.12; thick: major 0.55, tube 0.45 (axis z)
capsule     plain: radius 0.5, half length 1; tall: r 0.3, half length 1; wide: r 0.3, half length 1 along x
==========  ==============================================================================================

Held out by default (never in the training set, asked for at evaluation): "a tall cone", "a wide capsule",
"a flat sphere": every word of them is seen, in other combinations. ``WorldConfig.scenes`` mixes in two-part scenes
("a small cone next to a sphere", :func:`make_scene`; read by :mod:`noisecraft.points.scenes`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SHAPES = ("sphere", "box", "cylinder", "cone", "torus", "capsule")
PROPORTIONS: dict[str, tuple[str, ...]] = {
    "sphere": ("plain", "flat", "tall", "wide"),
    "box": ("plain", "tall", "flat", "wide", "thin"),
    "cylinder": ("plain", "tall", "flat", "wide"),
    "cone": ("plain", "tall", "flat"),
    "torus": ("plain", "thin", "thick"),
    "capsule": ("plain", "tall", "wide"),
}
SIZES = {"small": (0.45, 0.6), "large": (0.85, 1.0)}
ORIENTATIONS = ("upright", "canonical", "random")
DEFAULT_HELD_OUT = ("cone:tall", "capsule:wide", "sphere:flat")

# Canonical dimensions per (shape, proportion); see the module docstring. Axis: the primitive's axis (x or z).
DIMENSIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("sphere", "plain"): {"radii": (1.0, 1.0, 1.0)},
    ("sphere", "flat"): {"radii": (1.0, 1.0, 0.4)},
    ("sphere", "tall"): {"radii": (0.5, 0.5, 1.0)},
    ("sphere", "wide"): {"radii": (1.0, 0.5, 0.5)},
    ("box", "plain"): {"half": (1.0, 1.0, 1.0)},
    ("box", "tall"): {"half": (0.45, 0.45, 1.0)},
    ("box", "flat"): {"half": (1.0, 1.0, 0.3)},
    ("box", "wide"): {"half": (1.0, 0.45, 0.45)},
    ("box", "thin"): {"half": (1.0, 0.15, 1.0)},
    ("cylinder", "plain"): {"radius": 1.0, "half": 1.0, "axis": "z"},
    ("cylinder", "tall"): {"radius": 0.4, "half": 1.0, "axis": "z"},
    ("cylinder", "flat"): {"radius": 1.0, "half": 0.25, "axis": "z"},
    ("cylinder", "wide"): {"radius": 0.4, "half": 1.0, "axis": "x"},
    ("cone", "plain"): {"radius": 1.0, "height": 2.0},
    ("cone", "tall"): {"radius": 0.45, "height": 2.0},
    ("cone", "flat"): {"radius": 1.0, "height": 0.6},
    ("torus", "plain"): {"major": 0.7, "minor": 0.3},
    ("torus", "thin"): {"major": 0.85, "minor": 0.12},
    ("torus", "thick"): {"major": 0.55, "minor": 0.45},
    ("capsule", "plain"): {"radius": 0.5, "half": 1.0, "axis": "z"},
    ("capsule", "tall"): {"radius": 0.3, "half": 1.0, "axis": "z"},
    ("capsule", "wide"): {"radius": 0.3, "half": 1.0, "axis": "x"},
}


def caption(shape: str, proportion: str, size: str | None = None) -> str:
    """``"a tall cylinder"``, ``"a cube"`` (the plain box), ``"a small flat box"``, ``"a thin torus"``."""
    noun = "cube" if (shape, proportion) == ("box", "plain") else shape
    words = [w for w in (size, None if proportion == "plain" else proportion, noun) if w]
    return "a " + " ".join(words)


def all_combinations() -> list[tuple[str, str]]:
    return [(shape, proportion) for shape in SHAPES for proportion in PROPORTIONS[shape]]


def parse_combination(text: str) -> tuple[str, str]:
    """``"cone:tall"`` or ``"a tall cone"`` -> ``("cone", "tall")``."""
    if ":" in text:
        shape, proportion = text.split(":", 1)
    else:
        parsed = parse_caption(text)
        if parsed is None:
            raise ValueError(f"{text!r} names no shape of the points world (shapes: {', '.join(SHAPES)})")
        shape, proportion = parsed["shape"], parsed["proportion"]
    if (shape, proportion) not in DIMENSIONS:
        raise ValueError(f"unknown combination {shape}:{proportion}; known: "
                         f"{', '.join(f'{s}:{p}' for s, p in all_combinations())}")
    return shape, proportion


def parse_caption(text: str) -> dict[str, str | None] | None:
    """The shape, proportion and size a prompt asks for (``None`` if it names no known shape)."""
    words = [w.strip(".,;!") for w in text.lower().split()]
    shape = next((w for w in words if w in SHAPES or w in ("cube", "ball")), None)
    if shape is None:
        return None
    shape = {"cube": "box", "ball": "sphere"}.get(shape, shape)
    proportion = next((w for w in words if w in PROPORTIONS[shape] and w != "plain"), "plain")
    size = next((w for w in words if w in SIZES), None)
    return {"shape": shape, "proportion": proportion, "size": size}


def vocabulary() -> list[str]:
    """Every word of the world's captions (the learned text encoder's vocabulary)."""
    words = {"a", "cube", "ball", "next", "to", *SHAPES, *SIZES}
    words |= {p for props in PROPORTIONS.values() for p in props if p != "plain"}
    return sorted(words)


@dataclass
class WorldConfig:
    """``points`` per cloud; ``normals`` adds unit normals (channels 3-5); ``orientation`` (upright, canonical,
    random); ``held_out``: "shape:proportion" pairs never generated for training (``split="train"``) and the only
    ones of ``split="held_out"``; ``size_word_prob``: how often the caption names the size; ``shapes`` limits the
    world to some shapes (None: all); ``scenes``: the fraction of items that are two-part scenes ("a small cone next
    to a sphere", :mod:`noisecraft.points.scenes`; parts drawn from the split's pairs)."""

    points: int = 2048
    normals: bool = False
    orientation: str = "upright"
    held_out: list[str] = field(default_factory=lambda: list(DEFAULT_HELD_OUT))
    size_word_prob: float = 0.3
    shapes: list[str] | None = None
    jitter: float = 0.1
    scenes: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.scenes, bool) or not isinstance(self.scenes, (int, float)) or not 0 <= self.scenes <= 1:
            raise ValueError(f"world scenes (the fraction of two-part scenes) must be in [0, 1], got {self.scenes!r}")
        if isinstance(self.points, bool) or not isinstance(self.points, int) or self.points < 1:
            raise ValueError(f"world points must be a positive integer, got {self.points!r}")
        if self.orientation not in ORIENTATIONS:
            raise ValueError(f"world orientation must be one of {', '.join(ORIENTATIONS)}, got {self.orientation!r}")
        for item in self.held_out:
            parse_combination(item)
        for shape in self.shapes or ():
            if shape not in SHAPES:
                raise ValueError(f"unknown shape {shape!r}; the points world has {', '.join(SHAPES)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def combinations(self, split: str = "train") -> list[tuple[str, str]]:
        """The (shape, proportion) pairs of ``split``: "train" (all but held out), "held_out" or "all"."""
        held = {parse_combination(h) for h in self.held_out}
        pairs = [c for c in all_combinations() if self.shapes is None or c[0] in self.shapes]
        if split == "train":
            return [c for c in pairs if c not in held]
        if split == "held_out":
            return [c for c in pairs if c in held]
        if split == "all":
            return pairs
        raise ValueError(f"split must be train, held_out or all, got {split!r}")


def _rng(seed: int, index: int, salt: str = "") -> np.random.Generator:
    digest = hashlib.sha256(f"points-world:{seed}:{index}:{salt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def build_mesh(shape: str, proportion: str):
    """The trimesh mesh of ``shape`` / ``proportion`` in its canonical frame (z up, not yet centred or scaled)."""
    import trimesh

    dims = DIMENSIONS[(shape, proportion)]
    if shape == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=3)
        mesh.apply_scale(dims["radii"])
    elif shape == "box":
        mesh = trimesh.creation.box(extents=[2 * h for h in dims["half"]])
    elif shape == "cylinder":
        mesh = trimesh.creation.cylinder(radius=dims["radius"], height=2 * dims["half"], sections=48)
    elif shape == "cone":
        mesh = trimesh.creation.cone(radius=dims["radius"], height=dims["height"], sections=48)
    elif shape == "torus":
        mesh = trimesh.creation.torus(major_radius=dims["major"], minor_radius=dims["minor"], major_sections=48,
                                      minor_sections=24)
    elif shape == "capsule":
        mesh = trimesh.creation.capsule(height=2 * (dims["half"] - dims["radius"]), radius=dims["radius"],
                                        count=[24, 24])
    else:
        raise ValueError(f"unknown shape {shape!r}; the points world has {', '.join(SHAPES)}")
    if dims.get("axis") == "x":  # lie down: the z axis becomes x
        mesh.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, [0, 1, 0]))
    return mesh


_TRIANGLES: dict[tuple[str, str], np.ndarray] = {}


def canonical_triangles(shape: str, proportion: str) -> np.ndarray:
    """The canonical mesh's triangles ``[F, 3, 3]`` (built once per process)."""
    key = (shape, proportion)
    if key not in _TRIANGLES:
        _TRIANGLES[key] = np.asarray(build_mesh(shape, proportion).triangles, dtype=np.float64)
    return _TRIANGLES[key]


def jitter_scale(shape: str, proportion: str, rng: np.random.Generator, jitter: float) -> np.ndarray:
    """Per-axis scale factors in [1 - jitter, 1 + jitter]: independent for spheres and boxes, one radial and one
    axial factor for the round shapes (so a cylinder stays round)."""
    f = rng.uniform(1 - jitter, 1 + jitter, size=3)
    if shape in ("sphere", "box"):
        return f
    axis = 0 if DIMENSIONS[(shape, proportion)].get("axis") == "x" else 2
    scale = np.full(3, f[0])
    scale[axis] = f[1]
    return scale


def rotation(orientation: str, rng: np.random.Generator) -> np.ndarray:
    """A 3x3 rotation: a turn about z (upright), the identity (canonical) or uniform over SO(3) (random)."""
    if orientation == "canonical":
        return np.eye(3)
    if orientation == "upright":
        angle = rng.uniform(0, 2 * math.pi)
        c, s = math.cos(angle), math.sin(angle)
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def sample_triangles(triangles: np.ndarray, points: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``points`` points uniformly on a triangle soup ``[F, 3, 3]`` (faces drawn by area, uniform inside each) and
    the faces' unit normals (right-hand rule), from ``rng`` (deterministic)."""
    cross = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    areas = np.linalg.norm(cross, axis=1)
    if not areas.sum() > 0:
        raise ValueError("the surface has no area: nothing to sample points from")
    faces = rng.choice(len(areas), size=points, p=areas / areas.sum())
    tri = triangles[faces]
    u, v = rng.random(points), rng.random(points)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    xyz = tri[:, 0] + u[:, None] * (tri[:, 1] - tri[:, 0]) + v[:, None] * (tri[:, 2] - tri[:, 0])
    normals = cross[faces] / np.maximum(areas[faces], 1e-30)[:, None]
    return xyz, normals


@dataclass
class WorldSample:
    points: np.ndarray   # [N, 3] float32 (centred, in the unit ball)
    normals: np.ndarray  # [N, 3] float32 unit normals
    shape: str
    proportion: str
    size: str
    radius: float
    caption: str
    mesh: Any = None     # the trimesh mesh, in the cloud's frame


def make_sample(shape: str, proportion: str, *, points: int = 2048, size: str | None = None,
                orientation: str = "upright", rng: np.random.Generator | None = None, caption_size: bool = False,
                jitter: float = 0.1, with_mesh: bool = False) -> WorldSample:
    """One object of the world: canonical mesh -> jitter (per-axis scale) -> rotate -> sample -> centre -> scale to
    its radius. ``with_mesh`` also returns the transformed trimesh mesh (slower)."""
    rng = rng or np.random.default_rng(0)
    size = size or ("small" if rng.random() < 0.5 else "large")
    linear = rotation(orientation, rng) @ np.diag(jitter_scale(shape, proportion, rng, jitter))
    triangles = canonical_triangles(shape, proportion) @ linear.T
    xyz, normals = sample_triangles(triangles, points, rng)
    centre = xyz.mean(0)
    radius = float(rng.uniform(*SIZES[size]))
    scale = radius / float(np.linalg.norm(xyz - centre, axis=1).max())
    xyz = (xyz - centre) * scale
    mesh = None
    if with_mesh:
        import trimesh

        mesh = build_mesh(shape, proportion)
        transform = np.eye(4)
        transform[:3, :3] = linear * scale
        transform[:3, 3] = -centre * scale
        mesh.apply_transform(transform)
    text = caption(shape, proportion, size if caption_size else None)
    return WorldSample(xyz.astype(np.float32), normals.astype(np.float32), shape, proportion, size, radius, text,
                       mesh)


class PointsWorld:
    """Map-style data set of world objects: item ``i`` is the same for the same (config, seed, split, i).

    Items are dicts: ``points`` (float32 ``[N, 3]`` or ``[N, 6]`` with normals), ``caption``, ``label`` (index in
    :attr:`class_names`, the "shape:proportion" pairs of the split; a scene's: its first part's), ``shape``,
    ``proportion``, ``size``.
    """

    def __init__(self, config: WorldConfig | dict | None = None, *, size: int = 100_000, seed: int = 0,
                 split: str = "train"):
        self.config = config if isinstance(config, WorldConfig) else WorldConfig(**(config or {}))
        self.size, self.seed, self.split = int(size), int(seed), split
        self.pairs = self.config.combinations(split)
        if not self.pairs:
            raise ValueError(f"the {split} split of this world is empty (held out: {self.config.held_out})")
        self.class_names = [f"{s}:{p}" for s, p in self.pairs]

    def __len__(self) -> int:
        return self.size

    def sample(self, index: int) -> WorldSample:
        if not 0 <= index < self.size:
            raise IndexError(f"world item {index} of {self.size}")
        rng = _rng(self.seed, index, self.split)
        shape, proportion = self.pairs[index % len(self.pairs)]
        if self.config.scenes and rng.random() < self.config.scenes:
            second = self.pairs[int(rng.integers(len(self.pairs)))]
            return make_scene((shape, proportion), second, points=self.config.points,
                              orientation=self.config.orientation, rng=rng,
                              size_word_prob=self.config.size_word_prob, jitter=self.config.jitter)
        return make_sample(shape, proportion, points=self.config.points, orientation=self.config.orientation,
                           rng=rng, caption_size=bool(rng.random() < self.config.size_word_prob),
                           jitter=self.config.jitter)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.sample(index)
        cloud = np.concatenate([item.points, item.normals], 1) if self.config.normals else item.points
        return {"points": cloud, "caption": item.caption, "label": index % len(self.pairs), "shape": item.shape,
                "proportion": item.proportion, "size": item.size}

    @property
    def captions(self) -> list[str]:
        """The single-object captions of the split (scenes combine them with "next to")."""
        return sorted({caption(s, p, z) for s, p in self.pairs for z in (None, *SIZES)})


# Two-part scenes (read by noisecraft.points.scenes: prompts, references, analysis).
RELATION = " next to "
SMALL_FACTOR = 0.55   # a small part's radius relative to the other part's
GAP = 0.15            # the gap between the parts' bounding spheres, as a fraction of the larger radius


def scene_caption(first: tuple[str, str, str | None], second: tuple[str, str, str | None]) -> str:
    """``("cone", "plain", "small"), ("sphere", "plain", None)`` -> ``"a small cone next to a sphere"``."""
    return caption(*first) + RELATION + caption(*second)


def make_scene(first: tuple[str, str], second: tuple[str, str], *, points: int = 2048, orientation: str = "upright",
               rng: np.random.Generator, size_word_prob: float = 0.3, jitter: float = 0.1,
               small: int | None = None) -> WorldSample:
    """A two-part scene (see :mod:`noisecraft.points.scenes`); ``shape``/``proportion`` of the result are the first
    part's, ``caption`` names both. ``size`` is the first part's relative size. ``small``: which part is the small one
    (0 or 1; 2: the same size; None: drawn)."""
    drawn = int(rng.integers(0, 3))
    small = drawn if small is None else small
    sizes = ("small" if small == 0 else "large", "small" if small == 1 else "large")
    counts = (points // 2, points - points // 2)
    parts = []
    for (shape, proportion), size, count in zip((first, second), sizes, counts):
        part = make_sample(shape, proportion, points=count, size="large", orientation=orientation, rng=rng,
                           jitter=jitter)
        factor = SMALL_FACTOR if size == "small" else 1.0
        parts.append((part.points * factor, part.normals, part.radius * factor))
    angle = rng.uniform(0, 2 * math.pi)
    direction = np.array([math.cos(angle), math.sin(angle), 0.0])
    (a, na, ra), (b, nb, rb) = parts
    distance = ra + rb + GAP * max(ra, rb)
    xyz = np.concatenate([a - direction * distance / 2, b + direction * distance / 2])
    xyz = xyz - xyz.mean(0)
    radius = float(rng.uniform(0.9, 1.0))
    xyz = xyz * (radius / float(np.linalg.norm(xyz, axis=1).max()))
    words = [size if size == "small" and rng.random() < size_word_prob else None for size in sizes]
    text = scene_caption((*first, words[0]), (*second, words[1]))
    return WorldSample(xyz.astype(np.float32), np.concatenate([na, nb]).astype(np.float32), first[0], first[1],
                       sizes[0], radius, text)
