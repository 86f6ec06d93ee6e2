"""The "moving shapes" world: short clips of the shapes world whose objects move, with checkable captions.

Each clip holds one or two objects of the shapes world (same palette, shapes, sizes and background; identities and
sizes drawn by :func:`noisecraft.shapes.world.sample_scene`). Every object follows one motion for the whole clip:
``left``, ``right``, ``up`` or ``down`` at a steady speed, ``grows`` (its box side goes linearly from the small to the
large size), ``shrinks`` (large to small) or stays ``still``; two objects move independently. Captions extend the
shapes grammar with a motion phrase: "a small red circle moving right", "a green triangle moving up and a yellow
circle moving left" (as in the shapes world, a single object carries its size, here its size in the first frame).

As in CLEVR-CoGenT, some (colour, shape, motion) triples are held out of training (as are the shapes world's held-out
(colour, shape) pairs), so a video model's compositional generalisation can be measured. :func:`analyze_clip` reads a
clip back (the shapes analyzer on every frame, objects tracked by colour and shape) and measures each object's
motion, so that a generated clip's agreement with its prompt is scored exactly (:func:`clip_matches`).

Geometry as in the shapes world: fractions of the frame side, ``x`` right, ``y`` down ("up" = decreasing ``y``).
Every frame keeps every object's box ``BORDER`` inside the frame and two objects' boxes ``GAP`` apart.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from PIL import Image

from noisecraft.shapes.analyzer import analyze
from noisecraft.shapes.world import (BACKGROUND, BORDER, COLOURS, GAP, PALETTE, SHAPES, SIZES, SUPERSAMPLE, Scene,
                                     ShapeObject, ShapesWorldConfig, coverage, render, sample_scene)

MOTIONS = ("left", "right", "up", "down", "grows", "shrinks", "still")
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
MOTION_PHRASES = {"left": "moving left", "right": "moving right", "up": "moving up", "down": "moving down",
                  "grows": "growing", "shrinks": "shrinking", "still": "standing still"}
PHRASE_MOTIONS = {phrase: motion for motion, phrase in MOTION_PHRASES.items()}
KINDS = ("single", "pair")
PAIR_TEMPLATES = ("{a} and {b}", "{a} together with {b}")
MIN_TRAVEL = 0.25  # a moving object's centre travels between these fractions of the frame over the clip
MAX_TRAVEL = 0.45
MAX_PLACEMENTS = 200

# Analyser thresholds: a clean clip moves >= MIN_TRAVEL and scales its side by 7/4, far from both thresholds.
STILL_THRESHOLD = 0.08  # centroid displacement (fraction of the frame) below which an object is still
GROWTH_THRESHOLD = 1.25  # side ratio last/first above which an object grows (below its inverse: shrinks)


@dataclass(frozen=True)
class MovingObject:
    """An object and its motion: ``start`` is the box centre in the first frame, ``velocity`` the centre's change
    per frame (zero unless the motion is a direction), ``size`` the size name in the first frame."""

    colour: str
    shape: str
    size: str
    motion: str
    start: tuple[float, float]
    velocity: tuple[float, float] = (0.0, 0.0)

    def side(self, t: int, frames: int) -> float:
        """Box side (fraction of the frame) in frame ``t`` of ``frames``."""
        small, large = SIZES["small"], SIZES["large"]
        progress = t / (frames - 1) if frames > 1 else 0.0
        if self.motion == "grows":
            return small + (large - small) * progress
        if self.motion == "shrinks":
            return large + (small - large) * progress
        return SIZES[self.size]

    def center(self, t: int) -> tuple[float, float]:
        return (self.start[0] + t * self.velocity[0], self.start[1] + t * self.velocity[1])


@dataclass(frozen=True)
class Clip:
    kind: str
    objects: tuple[MovingObject, ...]
    frames: int


@dataclass(frozen=True)
class MotionSpec:
    """One object of a prompt: colour, shape, motion and (optionally) size in the first frame."""

    colour: str
    shape: str
    motion: str
    size: str | None = None


@dataclass(frozen=True)
class VideoPromptSpec:
    objects: tuple[MotionSpec, ...]


@dataclass
class VideoWorldConfig:
    """``frames`` per clip (8-16), ``resolution`` (as the shapes world), held-out ``(colour, shape)`` pairs (never in
    a clip) and ``(colour, shape, motion)`` triples (never moving that way in training), and how often a clip holds
    two objects."""

    resolution: int = 32
    frames: int = 8
    held_out_pairs: list[tuple[str, str]] = field(
        default_factory=lambda: [("yellow", "triangle"), ("purple", "circle")]
    )
    held_out_motions: list[tuple[str, str, str]] = field(
        default_factory=lambda: [("red", "square", "left"), ("blue", "circle", "grows"), ("green", "triangle", "down")]
    )
    pair_probability: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.frames, bool) or not isinstance(self.frames, int) or not 8 <= self.frames <= 16:
            raise ValueError(f"frames must be an integer in [8, 16], got {self.frames!r}")
        if not 0.0 <= self.pair_probability <= 1.0:
            raise ValueError(f"pair_probability must be in [0, 1], got {self.pair_probability!r}")
        self.held_out_pairs = [tuple(p) for p in self.held_out_pairs]
        self.held_out_motions = [tuple(t) for t in self.held_out_motions]
        for triple in self.held_out_motions:
            if len(triple) != 3 or triple[0] not in PALETTE or triple[1] not in SHAPES or triple[2] not in MOTIONS:
                raise ValueError(f"held_out_motions entry {triple!r} must be (colour, shape, motion) with colours "
                                 f"{COLOURS}, shapes {SHAPES} and motions {MOTIONS}")
        self.shapes_config()  # validates resolution and held_out_pairs

    def shapes_config(self) -> ShapesWorldConfig:
        weights = {"single": 1.0 - self.pair_probability, "pair": self.pair_probability}
        return ShapesWorldConfig(resolution=self.resolution, held_out_pairs=list(self.held_out_pairs),
                                 held_out_relations=[], kind_weights=weights)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> VideoWorldConfig:
        return cls(**data)


def is_held_out(spec: VideoPromptSpec, config: VideoWorldConfig) -> bool:
    """Whether a prompt mentions a held-out (colour, shape) pair or (colour, shape, motion) triple."""
    return any((o.colour, o.shape) in config.held_out_pairs or (o.colour, o.shape, o.motion) in config.held_out_motions
               for o in spec.objects)


# ----------------------------------------------------------------------------------------------------- sampling


def _bounds(side: float) -> tuple[float, float]:
    return BORDER + side / 2, 1 - BORDER - side / 2


def _sample_trajectory(obj: ShapeObject, motion: str, frames: int, rng: np.random.Generator) -> MovingObject:
    """A start and velocity keeping the object's box inside the frame in every frame."""
    size = {"grows": "small", "shrinks": "large"}.get(motion, obj.size)
    widest = SIZES["large"] if motion in ("grows", "shrinks") else SIZES[size]
    lo, hi = _bounds(widest)
    if motion not in DIRECTIONS:
        start = (float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)))
        return MovingObject(obj.colour, obj.shape, size, motion, start)
    travel = float(rng.uniform(MIN_TRAVEL, min(MAX_TRAVEL, hi - lo)))
    dx, dy = DIRECTIONS[motion]
    start = []
    for d in (dx, dy):
        if d > 0:
            start.append(float(rng.uniform(lo, hi - travel)))
        elif d < 0:
            start.append(float(rng.uniform(lo + travel, hi)))
        else:
            start.append(float(rng.uniform(lo, hi)))
    step = travel / (frames - 1)
    return MovingObject(obj.colour, obj.shape, size, motion, (start[0], start[1]), (dx * step, dy * step))


def _apart(a: MovingObject, b: MovingObject, frames: int) -> bool:
    for t in range(frames):
        (ax, ay), (bx, by) = a.center(t), b.center(t)
        if max(abs(ax - bx), abs(ay - by)) < (a.side(t, frames) + b.side(t, frames)) / 2 + GAP:
            return False
    return True


def _allowed_motions(colour: str, shape: str, config: VideoWorldConfig) -> list[str]:
    return [m for m in MOTIONS if (colour, shape, m) not in config.held_out_motions]


def sample_clip(rng: np.random.Generator, config: VideoWorldConfig | None = None) -> Clip:
    """A random training clip: never a held-out pair or (colour, shape, motion) triple."""
    config = config or VideoWorldConfig()
    while True:
        scene = sample_scene(rng, config.shapes_config())  # single or pair: identities and sizes
        motions = []
        for obj in scene.objects:
            allowed = _allowed_motions(obj.colour, obj.shape, config)
            motions.append(allowed[rng.integers(len(allowed))])
        for _ in range(MAX_PLACEMENTS):
            objects = tuple(_sample_trajectory(o, m, config.frames, rng) for o, m in zip(scene.objects, motions))
            if len(objects) < 2 or _apart(objects[0], objects[1], config.frames):
                return Clip(scene.kind, objects, config.frames)


def clip_from_spec(spec: VideoPromptSpec, rng: np.random.Generator, frames: int = 8) -> Clip:
    """A random clip satisfying ``spec`` (held-out combinations allowed); a given size must agree with the motion
    (growing objects start small, shrinking ones large)."""
    for o in spec.objects:
        required = {"grows": "small", "shrinks": "large"}.get(o.motion)
        if required and o.size not in (None, required):
            raise ValueError(f"a {o.size} object cannot be {MOTION_PHRASES[o.motion]}: it starts {required}")
    for _ in range(MAX_PLACEMENTS):
        objects = tuple(
            _sample_trajectory(ShapeObject(o.colour, o.shape, o.size or tuple(SIZES)[rng.integers(2)], (0.5, 0.5)),
                               o.motion, frames, rng)
            for o in spec.objects)
        if len(objects) < 2 or _apart(objects[0], objects[1], frames):
            return Clip("single" if len(objects) == 1 else "pair", objects, frames)
    raise ValueError(f"could not place {spec} in the frame")


# ---------------------------------------------------------------------------------------------------- rendering


def _scaled_coverage(shape: str, center: tuple[float, float], side: float, resolution: int) -> np.ndarray:
    """Coverage of a box of any side (the shapes world's :func:`coverage` only knows its two named sizes): the same
    supersampled geometry, used only for frames of growing/shrinking objects."""
    n = resolution * SUPERSAMPLE
    ticks = (np.arange(n) + 0.5) / n
    dx, dy = ticks[None, :] - center[0], ticks[:, None] - center[1]
    half = side / 2
    if shape == "circle":
        inside = dx**2 + dy**2 <= half**2
    elif shape == "square":
        inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    else:
        inside = (dy <= half) & (np.abs(dx) <= (dy + half) / 2)
    return inside.reshape(resolution, SUPERSAMPLE, resolution, SUPERSAMPLE).mean(axis=(1, 3))


def render_frame(clip: Clip, t: int, resolution: int = 32) -> Image.Image:
    """Frame ``t`` of ``clip``: the shapes world's renderer, except for objects between the two named sizes."""
    sides = [o.side(t, clip.frames) for o in clip.objects]
    named = {v: k for k, v in SIZES.items()}
    if all(side in named for side in sides):
        scene = Scene(clip.kind, tuple(ShapeObject(o.colour, o.shape, named[s], o.center(t))
                                       for o, s in zip(clip.objects, sides)))
        return render(scene, resolution)
    image = np.broadcast_to(np.array(BACKGROUND, dtype=np.float64), (resolution, resolution, 3)).copy()
    for o, side in zip(clip.objects, sides):
        if side in named:
            alpha = coverage(ShapeObject(o.colour, o.shape, named[side], o.center(t)), resolution)
        else:
            alpha = _scaled_coverage(o.shape, o.center(t), side, resolution)
        image = (1 - alpha[..., None]) * image + alpha[..., None] * np.array(PALETTE[o.colour], dtype=np.float64)
    return Image.fromarray(np.round(image).astype(np.uint8))


def render_clip(clip: Clip, resolution: int = 32) -> list[Image.Image]:
    return [render_frame(clip, t, resolution) for t in range(clip.frames)]


def clip_to_tensor(frames: list[Image.Image]) -> torch.Tensor:
    """``[3, T, H, W]`` in ``[-1, 1]`` from RGB frames."""
    pixels = torch.from_numpy(np.stack([np.asarray(f.convert("RGB"), dtype=np.float32) for f in frames]))
    return pixels.permute(3, 0, 1, 2) / 127.5 - 1.0


# ------------------------------------------------------------------------------------------- captions / parsing


def describe(clip: Clip) -> VideoPromptSpec:
    """The spec a caption of ``clip`` conveys: size only for a single object (as in the shapes world)."""
    single = len(clip.objects) == 1
    return VideoPromptSpec(tuple(MotionSpec(o.colour, o.shape, o.motion, o.size if single else None)
                                 for o in clip.objects))


def _phrase(o: MotionSpec) -> str:
    words = ["a"] + ([o.size] if o.size else []) + [o.colour, o.shape, MOTION_PHRASES[o.motion]]
    return " ".join(words)


def format_prompt(spec: VideoPromptSpec, template: int = 0) -> str:
    phrases = [_phrase(o) for o in spec.objects]
    if len(phrases) == 1:
        return phrases[0]
    return PAIR_TEMPLATES[template].format(a=phrases[0], b=phrases[1])


def caption(clip: Clip, rng: np.random.Generator | None = None) -> str:
    spec = describe(clip)
    template = 0 if rng is None or len(spec.objects) == 1 else int(rng.integers(len(PAIR_TEMPLATES)))
    return format_prompt(spec, template)


_MOTION_PATTERN = "|".join(re.escape(p) for p in MOTION_PHRASES.values())
_OBJECT = re.compile(rf"(?:a|an|one) (?:(?P<size>{'|'.join(SIZES)}) )?(?P<colour>\w+) (?P<shape>\w+) "
                     rf"(?P<motion>{_MOTION_PATTERN})")


def _parse_object(text: str) -> MotionSpec | None:
    match = _OBJECT.fullmatch(text)
    if match is None or match["colour"] not in PALETTE or match["shape"] not in SHAPES:
        return None
    return MotionSpec(match["colour"], match["shape"], PHRASE_MOTIONS[match["motion"]], match["size"])


def parse_prompt(text: str) -> VideoPromptSpec | None:
    """The spec of a prompt in the video caption grammar, or None outside it."""
    if not isinstance(text, str):
        raise TypeError(f"prompt must be a str, got {type(text).__name__}")
    normalized = " ".join(re.sub(r"[.,;:!?]", " ", text.lower()).split())
    single = _parse_object(normalized)
    if single is not None:
        return VideoPromptSpec((single,))
    for joiner in (" together with ", " and "):
        if joiner in normalized:
            a, _, b = normalized.partition(joiner)
            objects = (_parse_object(a), _parse_object(b))
            if all(objects):
                return VideoPromptSpec(objects)
    return None


# ----------------------------------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class MeasuredMotion:
    """One tracked object: identity, size in the first frame it is seen, the measured motion, the centroid's
    displacement first->last frame (fractions of the frame) and the ratio of its side last/first."""

    colour: str
    shape: str
    size: str
    motion: str
    displacement: tuple[float, float]
    growth: float
    frames_seen: int


def _frames_of(clip) -> list:
    """A list of per-frame images from a ``[3, T, H, W]`` tensor in [-1, 1] or a list of frames."""
    if isinstance(clip, torch.Tensor):
        if clip.ndim != 4 or clip.shape[0] != 3:
            raise ValueError(f"a clip tensor must be [3, T, H, W] in [-1, 1], got {tuple(clip.shape)}")
        return [clip[:, t] for t in range(clip.shape[1])]
    return list(clip)


def classify_motion(displacement: tuple[float, float], growth: float) -> str:
    if growth >= GROWTH_THRESHOLD:
        return "grows"
    if growth <= 1 / GROWTH_THRESHOLD:
        return "shrinks"
    dx, dy = displacement
    if max(abs(dx), abs(dy)) < STILL_THRESHOLD:
        return "still"
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def analyze_clip(clip) -> list[MeasuredMotion]:
    """Per (colour, shape) track, its measured motion: the shapes analyzer on every frame, tracks by identity
    (an identity seen more than once in a frame keeps its first detection). Sorted by first-frame position."""
    tracks: dict[tuple[str, str], list] = {}
    for frame in _frames_of(clip):
        seen = set()
        for o in analyze(frame):
            key = (o.colour, o.shape)
            if o.shape == "unknown" or key in seen:
                continue
            seen.add(key)
            tracks.setdefault(key, []).append(o)
    measured = []
    for (colour, shape), seen in tracks.items():
        first, last = seen[0], seen[-1]
        displacement = (last.centroid[0] - first.centroid[0], last.centroid[1] - first.centroid[1])
        growth = float(np.sqrt(last.area / first.area))
        measured.append(MeasuredMotion(colour, shape, first.size, classify_motion(displacement, growth),
                                       displacement, growth, len(seen)))
    return sorted(measured, key=lambda m: (tracks[(m.colour, m.shape)][0].centroid))


def clip_matches(spec: VideoPromptSpec | None, measured: list[MeasuredMotion], frames: int | None = None) -> bool:
    """Whether the measured objects are exactly those of ``spec`` (identity, first-frame size if asked, motion),
    nothing else, each seen in every frame when ``frames`` is given."""
    if spec is None or len(measured) != len(spec.objects):
        return False
    by_identity = {(m.colour, m.shape): m for m in measured}
    for want in spec.objects:
        got = by_identity.get((want.colour, want.shape))
        if got is None or got.motion != want.motion or (want.size is not None and got.size != want.size):
            return False
        if frames is not None and got.frames_seen != frames:
            return False
    return True


def check_clip(clip, prompt: str) -> bool:
    """Whether ``clip`` (tensor ``[3, T, H, W]`` or frames) satisfies ``prompt``."""
    frames = _frames_of(clip)
    return clip_matches(parse_prompt(prompt), analyze_clip(frames), frames=len(frames))


# ---------------------------------------------------------------------------------------------- data sets


def make_example(seed: int, index: int, config: VideoWorldConfig | None = None) -> tuple[Clip, str]:
    """The clip and caption of example ``index`` of the data set ``seed``; a pure function of both."""
    rng = np.random.default_rng([seed, index])
    clip = sample_clip(rng, config)
    return clip, caption(clip, rng)


class MovingShapesDataset(torch.utils.data.Dataset):
    """``n`` training clips ``{"video": [3, T, H, W] in [-1, 1], "caption": str, "index": int}``, rendered on the fly
    from ``(seed, index)`` alone."""

    def __init__(self, n: int, seed: int = 0, config: VideoWorldConfig | None = None):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.n, self.seed = n, seed
        self.config = config or VideoWorldConfig()

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for a MovingShapesDataset of {self.n} clips")
        index = index % self.n
        clip, text = make_example(self.seed, index, self.config)
        return {"video": clip_to_tensor(render_clip(clip, self.config.resolution)), "caption": text, "index": index}
