"""The "shapes" world: a procedural image distribution whose every image has a checkable caption.

Scenes hold 1-3 flat-coloured circles, squares and triangles on a dark background, captioned from a small
grammar (one object, a count, two objects, or two objects in a spatial relation). Because the world is fully
known, a text-to-image model's outputs can be scored exactly (``analyzer.py``, ``benchmark.py``), in the spirit of
GenEval (Ghosh et al., 2023, "GenEval: An Object-Focused Framework for Evaluating Text-to-Image Alignment"). As in
CLEVR-CoGenT (Johnson et al., 2017), some (colour, shape) pairs and one relation between two shapes are held out:
:func:`sample_scene` never produces them, so they measure compositional generalisation.

Geometry: coordinates are fractions of the image side, ``x`` to the right and ``y`` downwards (image convention),
so "above" means a smaller ``y``. An object's ``center`` is the centre of its square bounding box of side
``SIZES[size]``; triangles are upright (apex at the top of the box, base along its bottom).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

BACKGROUND = (24, 24, 24)
PALETTE = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 90, 230),
    "yellow": (235, 205, 40),
    "purple": (150, 60, 200),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 1 / 4, "large": 7 / 16}  # side of the bounding box, as a fraction of the image width
RELATIONS = ("left of", "right of", "above", "below")
INVERSE_RELATION = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
KINDS = ("single", "count", "relation", "pair")
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}

GAP = 1 / 16  # minimum empty space between two bounding boxes: objects never touch, even after anti-aliasing
BORDER = 1 / 64  # minimum space between a bounding box and the image edge
PERPENDICULAR_RATIO = 0.5  # relation scenes: offset across the relation axis <= 0.5 x the offset along it
GRID = 64  # object centres are drawn uniformly from a GRID x GRID lattice of feasible positions
MAX_RESTARTS = 2000
SUPERSAMPLE = 4  # anti-aliasing: coverage is measured on a 4x finer grid, then box-filtered

# Caption grammar. "{a}" and "{b}" are object phrases ("a small red circle", "two blue squares"); in relation
# templates "{a}" is always the object on the left / on top, so every paraphrase parses to the same canonical spec.
TEMPLATES = {
    "one": ("{a}", "{a} on a dark background"),
    "pair": ("{a} and {b}", "{a} together with {b}", "{a} and {b} on a dark background"),
    "left of": ("{a} to the left of {b}", "{b} to the right of {a}", "{b} with {a} on its left",
                "{a} with {b} on its right"),
    "above": ("{a} above {b}", "{b} below {a}", "{b} with {a} above it", "{a} with {b} below it"),
}
# Further phrasings the parser reads but training captions never use (so ``caption`` and ``vocabulary`` are
# unchanged): the benchmark's random prompts use them to measure how far a model generalises beyond its captions.
# Same rule: "{a}" is the object on the left / on top.
PARAPHRASES = {
    "one": ("an image of {a}", "a picture of {a}"),
    "pair": ("both {a} and {b}", "{a} as well as {b}"),
    "left of": ("{a} left of {b}", "{b} right of {a}", "to the left of {b} is {a}", "to the right of {a} is {b}"),
    "above": ("{a} over {b}", "{b} under {a}", "above {b} is {a}", "below {a} is {b}"),
}
DETERMINERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "1": 1, "2": 2, "3": 3}


@dataclass(frozen=True)
class ShapeObject:
    """One drawn object: ``center`` is ``(x, y)`` in fractions of the image side."""

    colour: str
    shape: str
    size: str
    center: tuple[float, float]


@dataclass(frozen=True)
class Scene:
    """A rendered scene. For ``kind == "relation"``, ``objects[0]`` is ``relation`` of ``objects[1]``."""

    kind: str
    objects: tuple[ShapeObject, ...]
    relation: str | None = None


@dataclass(frozen=True)
class ObjectSpec:
    """One noun phrase of a prompt: ``count`` objects of this colour and shape; ``size=None`` means either size."""

    colour: str
    shape: str
    size: str | None = None
    count: int = 1


@dataclass(frozen=True)
class PromptSpec:
    """The meaning of a prompt, canonical so that paraphrases compare equal.

    ``relation`` is None, ``"left of"`` or ``"above"``: "B right of A" is stored as A left of B, "B below A" as
    A above B (build it with :func:`relation_spec`). With a relation, ``objects == (A, B)``, each ``count == 1``.
    """

    objects: tuple[ObjectSpec, ...]
    relation: str | None = None


def relation_spec(a: ObjectSpec, relation: str, b: ObjectSpec) -> PromptSpec:
    """``a <relation> b`` in canonical form (only "left of" and "above" remain)."""
    if relation not in RELATIONS:
        raise ValueError(f"unknown relation {relation!r}; expected one of {RELATIONS}")
    if relation in ("right of", "below"):
        return PromptSpec((b, a), INVERSE_RELATION[relation])
    return PromptSpec((a, b), relation)


@dataclass
class ShapesWorldConfig:
    """What the training distribution holds: resolution, held-out combinations and how often each scene kind occurs.

    ``held_out_pairs``: ``(colour, shape)`` pairs that never occur in training scenes. ``held_out_relations``:
    ``(shape, relation, shape)`` triples never captioned in training, in any phrasing ("a square below a triangle"
    is the triple ``("triangle", "above", "square")``).
    """

    resolution: int = 32
    held_out_pairs: list[tuple[str, str]] = field(
        default_factory=lambda: [("yellow", "triangle"), ("purple", "circle")]
    )
    held_out_relations: list[tuple[str, str, str]] = field(default_factory=lambda: [("triangle", "above", "square")])
    kind_weights: dict[str, float] = field(
        default_factory=lambda: {"single": 0.3, "count": 0.2, "relation": 0.3, "pair": 0.2}
    )

    def __post_init__(self) -> None:
        if not isinstance(self.resolution, int) or not 16 <= self.resolution <= 64:
            raise ValueError(f"resolution must be an integer in [16, 64], got {self.resolution!r}")
        self.held_out_pairs = [tuple(pair) for pair in self.held_out_pairs]
        for colour, shape in self.held_out_pairs:
            _check_identity(colour, shape, where="held_out_pairs")
        triples = []
        for triple in self.held_out_relations:
            if len(triple) != 3 or triple[1] not in RELATIONS or not {triple[0], triple[2]} <= set(SHAPES):
                raise ValueError(f"held_out_relations entry {tuple(triple)!r} must be (shape, relation, shape) "
                                 f"with shapes from {SHAPES} and a relation from {RELATIONS}")
            spec = relation_spec(ObjectSpec("red", triple[0]), triple[1], ObjectSpec("red", triple[2]))
            triples.append((spec.objects[0].shape, spec.relation, spec.objects[1].shape))
        self.held_out_relations = triples
        unknown = set(self.kind_weights) - set(KINDS)
        weights = [float(self.kind_weights.get(kind, 0.0)) for kind in KINDS]
        if unknown or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"kind_weights must map kinds from {KINDS} to non-negative weights with a positive "
                             f"sum, got {self.kind_weights!r}")
        self.kind_weights = dict(zip(KINDS, weights))

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict) -> ShapesWorldConfig:
        return cls(**data)


def _check_identity(colour: str, shape: str, where: str) -> None:
    if colour not in PALETTE or shape not in SHAPES:
        raise ValueError(f"{where}: ({colour!r}, {shape!r}) is not a (colour, shape) pair; colours are {COLOURS}, "
                         f"shapes are {SHAPES}")


def is_held_out(spec: PromptSpec, config: ShapesWorldConfig) -> bool:
    """Whether a prompt mentions a held-out (colour, shape) pair or a held-out relation between two shapes."""
    if any((o.colour, o.shape) in config.held_out_pairs for o in spec.objects):
        return True
    if spec.relation is None:
        return False
    a, b = spec.objects
    return (a.shape, spec.relation, b.shape) in config.held_out_relations


def describe(scene: Scene) -> PromptSpec:
    """The canonical spec a caption of ``scene`` conveys: size only for single objects, counts by identity."""
    if scene.kind == "single":
        (o,) = scene.objects
        return PromptSpec((ObjectSpec(o.colour, o.shape, o.size, 1),))
    if scene.kind == "relation":
        a, b = (ObjectSpec(o.colour, o.shape) for o in scene.objects)
        return relation_spec(a, scene.relation, b)
    counts: dict[tuple[str, str], int] = {}
    for o in scene.objects:  # dicts keep first-seen order, so "a red circle and a blue square" keeps its order
        counts[(o.colour, o.shape)] = counts.get((o.colour, o.shape), 0) + 1
    return PromptSpec(tuple(ObjectSpec(colour, shape, None, n) for (colour, shape), n in counts.items()))


# ----------------------------------------------------------------------------------------------------- sampling


def _sample_identity(rng: np.random.Generator, config: ShapesWorldConfig, exclude=()) -> tuple[str, str]:
    """A uniformly random (colour, shape) pair allowed in training, other than those in ``exclude``."""
    allowed = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in config.held_out_pairs and (c, s) not in exclude]
    return allowed[rng.integers(len(allowed))]


def _sample_spec(kind: str, rng: np.random.Generator, config: ShapesWorldConfig) -> PromptSpec:
    if kind == "single":
        colour, shape = _sample_identity(rng, config)
        return PromptSpec((ObjectSpec(colour, shape, tuple(SIZES)[rng.integers(2)], 1),))
    if kind == "count":
        colour, shape = _sample_identity(rng, config)
        return PromptSpec((ObjectSpec(colour, shape, None, int(rng.integers(1, 4))),))
    first = _sample_identity(rng, config)
    second = _sample_identity(rng, config, exclude=(first,))  # two different identities: never a hidden count
    a, b = ObjectSpec(*first), ObjectSpec(*second)
    if kind == "pair":
        return PromptSpec((a, b))
    return relation_spec(a, ("left of", "above")[rng.integers(2)], b)


def sample_scene(rng: np.random.Generator, config: ShapesWorldConfig | None = None) -> Scene:
    """A random training scene: kind by ``config.kind_weights``, never a held-out pair or relation."""
    config = config or ShapesWorldConfig()
    weights = np.array([config.kind_weights[kind] for kind in KINDS])
    kind = KINDS[rng.choice(len(KINDS), p=weights / weights.sum())]
    spec = _sample_spec(kind, rng, config)
    while is_held_out(spec, config):  # only relation specs can be held out here (pairs are excluded above)
        spec = _sample_spec(kind, rng, config)
    return scene_from_spec(spec, rng)


def _sample_sizes(rng: np.random.Generator, n: int) -> list[str]:
    """Independent sizes, but at most one large object among three so that a scene always fits."""
    sizes = [tuple(SIZES)[rng.integers(2)] for _ in range(n)]
    if n >= 3 and sizes.count("large") > 1:
        first_large = sizes.index("large")
        sizes = ["large" if i == first_large else "small" for i in range(n)]
    return sizes


def scene_from_spec(spec: PromptSpec, rng: np.random.Generator) -> Scene:
    """A random scene satisfying ``spec`` (unspecified sizes drawn at random); held-out combinations are allowed."""
    identities = [(o.colour, o.shape, o.size) for o in spec.objects for _ in range(o.count)]
    random_sizes = _sample_sizes(rng, len(identities))
    sizes = [size or random_size for (_, _, size), random_size in zip(identities, random_sizes)]
    centers = _place(rng, [SIZES[size] for size in sizes], spec.relation)
    objects = tuple(ShapeObject(c, s, size, center) for (c, s, _), size, center in zip(identities, sizes, centers))
    if spec.relation is not None:
        kind = "relation"
    elif len(spec.objects) > 1:
        kind = "pair"
    elif spec.objects[0].size is None or spec.objects[0].count > 1:
        kind = "count"
    else:
        kind = "single"
    return Scene(kind, objects, spec.relation)


def _relation_holds(relation: str, a: np.ndarray, b: np.ndarray, min_offset: float, ratio: float) -> np.ndarray:
    """Whether ``a <relation> b`` for centres ``a`` and ``b`` (``[..., 2]``): along the relation axis, ``b`` is
    at least ``min_offset`` further in the relation's direction, and the offset across the axis is at most
    ``ratio`` times the offset along it."""
    axis = 0 if relation in ("left of", "right of") else 1
    direction = 1.0 if relation in ("left of", "above") else -1.0  # "a left of b": b has the larger x
    along = direction * (b[..., axis] - a[..., axis])
    across = np.abs(b[..., 1 - axis] - a[..., 1 - axis])
    return (along >= min_offset) & (across <= ratio * along)


def _place(rng: np.random.Generator, extents: list[float], relation: str | None) -> list[tuple[float, float]]:
    """Centres for boxes of the given sides: inside the image, ``GAP`` apart, and for a relation with
    ``extents[0]`` clearly ``relation`` of ``extents[1]``. Each centre is uniform over the feasible lattice
    points given the ones before; a dead end restarts the scene."""
    ticks = np.arange(1, GRID) / GRID
    candidates = np.stack(np.meshgrid(ticks, ticks, indexing="xy"), axis=-1).reshape(-1, 2)
    for _ in range(MAX_RESTARTS):
        centers: list[np.ndarray] = []
        for i, extent in enumerate(extents):
            inside = (ticks >= BORDER + extent / 2) & (ticks <= 1 - BORDER - extent / 2)
            feasible = (inside[None, :] & inside[:, None]).ravel()
            for center, other in zip(centers, extents):
                offset = np.abs(candidates - center)
                feasible &= np.maximum(offset[:, 0], offset[:, 1]) >= (extent + other) / 2 + GAP
            if relation is not None and i == 1:
                min_offset = (extents[0] + extent) / 2 + GAP  # boxes disjoint along the relation axis
                feasible &= _relation_holds(relation, centers[0], candidates, min_offset, PERPENDICULAR_RATIO)
            choices = np.flatnonzero(feasible)
            if choices.size == 0:
                break
            centers.append(candidates[choices[rng.integers(choices.size)]])
        else:
            return [(float(x), float(y)) for x, y in centers]
    raise ValueError(f"could not fit objects with sides {extents} (relation {relation!r}) into the image; "
                     "ask for fewer or smaller objects")


# ---------------------------------------------------------------------------------------------------- rendering


def coverage(obj: ShapeObject, resolution: int) -> np.ndarray:
    """Fraction of each pixel ``[H, W]`` covered by ``obj``, measured on a ``SUPERSAMPLE``-times finer grid."""
    n = resolution * SUPERSAMPLE
    ticks = (np.arange(n) + 0.5) / n
    dx = ticks[None, :] - obj.center[0]
    dy = ticks[:, None] - obj.center[1]
    half = SIZES[obj.size] / 2
    if obj.shape == "circle":
        inside = dx**2 + dy**2 <= half**2
    elif obj.shape == "square":
        inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    elif obj.shape == "triangle":  # apex at (x, y - half), base from (x - half, y + half) to (x + half, y + half)
        inside = (dy <= half) & (np.abs(dx) <= (dy + half) / 2)
    else:
        raise ValueError(f"unknown shape {obj.shape!r}; expected one of {SHAPES}")
    return inside.reshape(resolution, SUPERSAMPLE, resolution, SUPERSAMPLE).mean(axis=(1, 3))


def render(scene: Scene, resolution: int = 32) -> Image.Image:
    """RGB image of ``scene``: each object composited over the background with its anti-aliased coverage."""
    if not isinstance(resolution, int) or resolution < 8:
        raise ValueError(f"resolution must be an integer >= 8, got {resolution!r}")
    image = np.broadcast_to(np.array(BACKGROUND, dtype=np.float64), (resolution, resolution, 3)).copy()
    for obj in scene.objects:
        if obj.colour not in PALETTE:
            raise ValueError(f"unknown colour {obj.colour!r}; expected one of {COLOURS}")
        alpha = coverage(obj, resolution)[..., None]
        image = (1 - alpha) * image + alpha * np.array(PALETTE[obj.colour], dtype=np.float64)
    return Image.fromarray(np.round(image).astype(np.uint8))


# ------------------------------------------------------------------------------------------- captions / parsing


def _phrase(o: ObjectSpec, determiner: str) -> str:
    """"a small red circle", "one red circle", "two blue squares"."""
    words = [NUMBER_WORDS[o.count] if o.count > 1 else determiner]
    words += [o.size] if o.size else []
    words += [o.colour, o.shape + ("s" if o.count > 1 else "")]
    return " ".join(words)


def _template_key(spec: PromptSpec) -> str:
    if spec.relation is not None:
        return spec.relation
    return "one" if len(spec.objects) == 1 else "pair"


def _templates(spec: PromptSpec) -> tuple[str, ...]:
    return TEMPLATES[_template_key(spec)]


def format_prompt(spec: PromptSpec, template: int = 0, determiner: str = "a", paraphrases: bool = False) -> str:
    """The text of ``spec`` in one of its phrasings: ``template`` indexes ``TEMPLATES``, or with ``paraphrases``
    ``TEMPLATES`` followed by ``PARAPHRASES`` (see :func:`num_phrasings`); ``determiner`` ("a" or "one")
    introduces single objects."""
    if determiner not in ("a", "one"):
        raise ValueError(f'determiner must be "a" or "one", got {determiner!r}')
    templates = _templates(spec) + (PARAPHRASES[_template_key(spec)] if paraphrases else ())
    if not 0 <= template < len(templates):
        raise ValueError(f"template must be in [0, {len(templates)}) for this prompt, got {template}")
    phrases = [_phrase(o, determiner) for o in spec.objects]
    return templates[template].format(a=phrases[0], b=phrases[1] if len(phrases) > 1 else "")


def num_phrasings(spec: PromptSpec) -> int:
    """How many templates :func:`format_prompt` accepts for ``spec`` with ``paraphrases=True``."""
    key = _template_key(spec)
    return len(TEMPLATES[key]) + len(PARAPHRASES[key])


def caption(scene: Scene, rng: np.random.Generator | None = None) -> str:
    """A caption of ``scene``: a random paraphrase, or the canonical one (first template, "a") without ``rng``."""
    spec = describe(scene)
    if rng is None:
        return format_prompt(spec)
    template = int(rng.integers(len(_templates(spec))))
    return format_prompt(spec, template, determiner=("a", "one")[int(rng.random() < 0.25)])


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"(\{a\}|\{b\})", template)
    return re.compile("".join({"{a}": "(?P<a>.+)", "{b}": "(?P<b>.+)"}.get(p, re.escape(p)) for p in parts))


_PARSERS = [(key, _template_regex(t), phrasings is PARAPHRASES) for phrasings in (TEMPLATES, PARAPHRASES)
            for key, templates in phrasings.items() for t in templates]


def _parse_phrase(text: str) -> ObjectSpec | None:
    """``[determiner] [size] colour shape[s]`` -> ObjectSpec, or None if any word is unknown."""
    words = text.split()
    count = DETERMINERS.get(words[0], 0) if words else 0
    words = words[1:] if count else words
    count = count or 1
    size = words.pop(0) if words and words[0] in SIZES else None
    if len(words) != 2 or words[0] not in PALETTE:
        return None
    shape = words[1][:-1] if words[1].endswith("s") and words[1][:-1] in SHAPES else words[1]
    return ObjectSpec(words[0], shape, size, count) if shape in SHAPES else None


def parse_prompt(text: str) -> PromptSpec | None:
    """Parse a prompt written in the world's caption grammar (any template of ``TEMPLATES`` or ``PARAPHRASES``)
    into its canonical spec; None when the text is outside the grammar (unknown words, counts inside a relation,
    ...)."""
    parsed = _parse(text)
    return parsed[0] if parsed else None


def is_paraphrase(text: str) -> bool:
    """Whether ``text`` is phrased with a template of ``PARAPHRASES`` (a phrasing training captions never use)."""
    parsed = _parse(text)
    return bool(parsed and parsed[1])


def _parse(text: str) -> tuple[PromptSpec, bool] | None:
    """The canonical spec of ``text`` and whether its template is a paraphrase, or None outside the grammar."""
    if not isinstance(text, str):
        raise TypeError(f"prompt must be a str, got {type(text).__name__}")
    normalized = " ".join(re.sub(r"[.,;:!?]", " ", text.lower()).split())
    for key, pattern, paraphrase in _PARSERS:
        match = pattern.fullmatch(normalized)
        if match is None:
            continue
        objects = tuple(_parse_phrase(match.group(name)) for name in ("a", "b") if name in pattern.groupindex)
        if any(o is None for o in objects):
            continue
        if key in ("left of", "above"):
            if any(o.count != 1 for o in objects):
                continue  # "two red circles above a square" has no single geometry to check
            return PromptSpec(objects, key), paraphrase
        return PromptSpec(objects), paraphrase
    return None


def vocabulary() -> tuple[str, ...]:
    """Every word the caption grammar can produce (for word-level text encoders)."""
    words = set(DETERMINERS) | set(SIZES) | set(COLOURS) | set(SHAPES) | {s + "s" for s in SHAPES}
    for templates in TEMPLATES.values():
        for template in templates:
            words |= set(re.sub(r"\{[ab]\}", " ", template).split())
    return tuple(sorted(words))


# ---------------------------------------------------------------------------------------------- data sets


def make_example(seed: int, index: int, config: ShapesWorldConfig | None = None) -> tuple[Scene, str]:
    """The scene and caption of example ``index`` of the data set ``seed``; a pure function of both."""
    rng = np.random.default_rng([seed, index])
    scene = sample_scene(rng, config)
    return scene, caption(scene, rng)


class ShapesDataset(torch.utils.data.Dataset):
    """``n`` training examples ``{"image": [C, H, W] in [-1, 1], "caption": str, "index": int}``, each rendered
    on the fly from ``(seed, index)`` alone, so any worker, epoch or machine sees the same data."""

    def __init__(self, n: int, seed: int = 0, config: ShapesWorldConfig | None = None, channels: int = 3,
                 cache: bool = False):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
        self.n, self.seed, self.channels = n, seed, channels
        self.config = config or ShapesWorldConfig()
        self._cache: dict[int, dict] | None = {} if cache else None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for a ShapesDataset of {self.n} examples")
        index = index % self.n
        if self._cache is not None and index in self._cache:
            return dict(self._cache[index])
        scene, text = make_example(self.seed, index, self.config)
        image = render(scene, self.config.resolution)
        if self.channels == 1:
            image = image.convert("L")
        pixels = torch.from_numpy(np.array(image, dtype=np.float32)).reshape(image.height, image.width, -1)
        item = {"image": pixels.permute(2, 0, 1) / 127.5 - 1.0, "caption": text, "index": index}
        if self._cache is not None:
            self._cache[index] = item
        return dict(item)


def export_shapes(out_dir: str | Path, n: int, seed: int = 0, config: ShapesWorldConfig | None = None,
                  overwrite: bool = False) -> Path:
    """Write ``n`` examples as ``out_dir/00000.png ...`` plus ``metadata.jsonl`` (``{"file_name", "text"}`` per
    line, the Hugging Face ``imagefolder`` convention read by ``noisecraft.images.data``)."""
    out = Path(out_dir)
    metadata_path = out / "metadata.jsonl"
    if metadata_path.exists() and not overwrite:
        raise FileExistsError(f"{metadata_path} already exists; choose another directory or pass overwrite=True")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    config = config or ShapesWorldConfig()
    out.mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(n - 1)))
    lines = []
    for index in range(n):
        scene, text = make_example(seed, index, config)
        name = f"{index:0{width}d}.png"
        render(scene, config.resolution).save(out / name)
        lines.append(json.dumps({"file_name": name, "text": text}) + "\n")
    metadata_path.write_text("".join(lines), encoding="utf-8")
    return out
