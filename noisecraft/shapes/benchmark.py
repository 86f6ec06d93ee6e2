"""A GenEval-style benchmark on the shapes world: exact checks, a Frechet distance and diversity.

Following GenEval (Ghosh et al., 2023), each prompt belongs to a category (one object, two objects, counting,
colours, position, attribute binding) and an image scores 1 when the analyzer finds exactly the requested scene.
A category's score is the fraction of its images that match; "overall" averages the seen categories, and the
held-out combinations (never in training scenes, see ``ShapesWorldConfig``) and the composition prompts (Composable
Diffusion's ``AND`` and negation, Liu et al. 2022) are reported on their own.

Two prompt sets: :func:`benchmark_prompts` is a fixed list (comparable across runs and with earlier results), and
:func:`random_prompts` draws new combinations and phrasings from the grammar for every seed, so that a model is
not tuned to one list. Every prompt carries its meaning (the scenes that satisfy it), so scoring is exact.

Image quality is measured like FID (Heusel et al., 2017, eq. 6) but in a small, fixed, training-free feature
space (:func:`image_features`: palette occupancy, layout, colour fidelity, noise and sharpness) against renders
of the same prompts, so it runs anywhere in seconds. The benchmark never sees a model: it calls
``generate(prompts, seed) -> [B, 3, H, W] in [-1, 1]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .analyzer import FAILURES, analyze, colour_fit, diagnose
from noisecraft.text.prompts import is_composed

from .world import (COLOURS, RELATIONS, SHAPES, SIZES, ObjectSpec, PromptSpec, ShapesWorldConfig, format_prompt,
                    is_held_out, is_paraphrase, num_phrasings, parse_prompt, relation_spec, render,
                    scene_from_spec)

CATEGORIES = ("single_object", "two_objects", "counting", "colours", "position", "attribute_binding", "held_out",
              "composition")
SEEN_CATEGORIES = CATEGORIES[:6]  # "overall" averages these; held-out and composition are reported on their own
PROMPT_SETS = ("fixed", "random")


@dataclass(frozen=True)
class BenchmarkPrompt:
    """A prompt, its category and its meaning: the specs an image may satisfy (any one of them). Without
    ``meaning`` the prompt means what :func:`~noisecraft.shapes.world.parse_prompt` reads in ``text``."""

    category: str
    text: str
    meaning: tuple[PromptSpec, ...] = ()

    def specs(self) -> tuple[PromptSpec | None, ...]:
        return self.meaning or (parse_prompt(self.text),)


def _grammar_prompt(category: str, spec: PromptSpec, text: str) -> BenchmarkPrompt:
    return BenchmarkPrompt(category, text, (spec,))


def conjunction_prompt(a: ObjectSpec, b: ObjectSpec) -> BenchmarkPrompt:
    """"a red circle AND a blue square": both objects, in their colours, and nothing else."""
    text = " AND ".join(format_prompt(PromptSpec((o,))) for o in (a, b))
    return BenchmarkPrompt("composition", text, (PromptSpec((a, b)),))


def negation_prompt(shape: str, colour: str) -> BenchmarkPrompt:
    """"a circle AND red:-1": one object of ``shape`` in any colour but ``colour`` (Composable Diffusion's NOT)."""
    meaning = tuple(PromptSpec((ObjectSpec(other, shape),)) for other in COLOURS if other != colour)
    return BenchmarkPrompt("composition", f"a {shape} AND {colour}:-1", meaning)


def _spread(items: list, k: int) -> list:
    """``k`` items taken at even intervals: a fixed, varied subset of a long ordered list."""
    return [items[i * len(items) // k] for i in range(min(k, len(items)))]


def benchmark_prompts(config: ShapesWorldConfig | None = None) -> list[BenchmarkPrompt]:
    """The fixed prompt list (no randomness: ordered candidate lists sampled at even intervals).

    Seen categories use only training combinations; "held_out" asks for each held-out (colour, shape) pair alone
    at both sizes, counted, and next to another object, and for each held-out relation in two phrasings;
    "composition" (last, so the images of the other prompts are those of earlier versions) asks for two objects
    joined by ``AND`` and for one shape ``AND`` a colour with weight -1.
    """
    config = config or ShapesWorldConfig()
    seen = [ObjectSpec(c, s) for c in COLOURS for s in SHAPES if (c, s) not in config.held_out_pairs]
    distinct = [(a, b) for a in seen for b in seen if a.colour != b.colour and a.shape != b.shape]
    prompts: list[tuple[str, PromptSpec, int]] = []  # (category, spec, template)
    for i, (shape, size) in enumerate((shape, size) for shape in SHAPES for size in SIZES):
        colours = [o.colour for o in seen if o.shape == shape]
        colour = colours[i % len(colours)]
        prompts.append(("single_object", PromptSpec((ObjectSpec(colour, shape, size),)), 0))
    for i, colour in enumerate(COLOURS):
        shapes = [o.shape for o in seen if o.colour == colour]
        prompts.append(("colours", PromptSpec((ObjectSpec(colour, shapes[i % len(shapes)]),)), 0))
    for i, o in enumerate(_spread(seen, 6)):
        prompts.append(("counting", PromptSpec((ObjectSpec(o.colour, o.shape, None, 2 + i % 2),)), 0))
    for i, colour in enumerate(COLOURS):  # one colour on two shapes: are both objects there?
        shapes = [o.shape for o in seen if o.colour == colour]
        if len(shapes) > 1:
            a, b = shapes[i % len(shapes)], shapes[(i + 1) % len(shapes)]
            prompts.append(("two_objects", PromptSpec((ObjectSpec(colour, a), ObjectSpec(colour, b))), 0))
    for a, b in _spread(distinct, 6):  # two colours on two shapes: is each colour on the right shape?
        prompts.append(("attribute_binding", PromptSpec((a, b)), 0))
    for relation in ("left of", "above"):
        specs = [relation_spec(a, relation, b) for a, b in distinct]
        for i, spec in enumerate(_spread([s for s in specs if not is_held_out(s, config)], 4)):
            prompts.append(("position", spec, i % 2))  # "A left of B" and "B right of A" phrasings
    for colour, shape in config.held_out_pairs:
        other = next(o for o in seen if o.colour != colour and o.shape != shape)
        alone = [PromptSpec((ObjectSpec(colour, shape, size),)) for size in SIZES]
        counted = PromptSpec((ObjectSpec(colour, shape, None, 2),))
        prompts += [("held_out", spec, 0) for spec in (*alone, counted, PromptSpec((ObjectSpec(colour, shape), other)))]
    for first, relation, second in config.held_out_relations:
        a = next(o for o in seen if o.shape == first)
        b = next(o for o in seen if o.shape == second and o.colour != a.colour)
        prompts += [("held_out", relation_spec(a, relation, b), template) for template in (0, 1)]
    fixed = [_grammar_prompt(category, spec, format_prompt(spec, template)) for category, spec, template in prompts]
    pairs = [(ObjectSpec("red", "circle"), ObjectSpec("blue", "square")), *_spread(distinct, 3)]
    negations = [("circle", "red"), ("square", "blue"), ("triangle", "green")]
    return (fixed + [conjunction_prompt(a, b) for a, b in pairs]
            + [negation_prompt(shape, colour) for shape, colour in negations])


# ---------------------------------------------------------------------------------------------- random prompts


def _pick(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))]


def _seen_objects(config: ShapesWorldConfig) -> list[ObjectSpec]:
    return [ObjectSpec(c, s) for c in COLOURS for s in SHAPES if (c, s) not in config.held_out_pairs]


def _distinct_pair(rng: np.random.Generator, objects: list[ObjectSpec]) -> tuple[ObjectSpec, ObjectSpec]:
    """Two objects differing in colour and in shape (so that a swap of attributes is a visible binding error)."""
    a = _pick(rng, objects)
    return a, _pick(rng, [o for o in objects if o.colour != a.colour and o.shape != a.shape])


def _draw_single_object(rng, config):
    o = _pick(rng, _seen_objects(config))
    return PromptSpec((ObjectSpec(o.colour, o.shape, _pick(rng, tuple(SIZES))),))


def _draw_colours(rng, config):
    return PromptSpec((_pick(rng, _seen_objects(config)),))


def _draw_counting(rng, config):
    o = _pick(rng, _seen_objects(config))
    return PromptSpec((ObjectSpec(o.colour, o.shape, None, int(rng.integers(2, 4))),))


def _draw_two_objects(rng, config):  # one colour on two shapes
    seen = _seen_objects(config)
    colour = _pick(rng, sorted({o.colour for o in seen if sum(p.colour == o.colour for p in seen) > 1}))
    first, second = rng.permutation([o.shape for o in seen if o.colour == colour])[:2]
    return PromptSpec((ObjectSpec(colour, str(first)), ObjectSpec(colour, str(second))))


def _draw_attribute_binding(rng, config):  # two colours on two shapes
    return PromptSpec(_distinct_pair(rng, _seen_objects(config)))


def _draw_position(rng, config):
    while True:  # held-out relations are a small minority: a few redraws at most
        a, b = _distinct_pair(rng, _seen_objects(config))
        spec = relation_spec(a, _pick(rng, RELATIONS), b)
        if not is_held_out(spec, config):
            return spec


def _draw_held_out(rng, config):
    """A held-out (colour, shape) pair alone, counted or next to another object, or a held-out relation."""
    seen = _seen_objects(config)
    forms = [("pair", pair) for pair in config.held_out_pairs] + [("relation", t) for t in config.held_out_relations]
    form, what = _pick(rng, forms)
    if form == "relation":
        first, relation, second = what
        a = _pick(rng, [o for o in seen if o.shape == first])
        return PromptSpec((a, _pick(rng, [o for o in seen if o.shape == second and o.colour != a.colour])), relation)
    held = ObjectSpec(*what)
    other = _pick(rng, [o for o in seen if o.colour != held.colour and o.shape != held.shape])
    pair = (held, other) if rng.random() < 0.5 else (other, held)
    return _pick(rng, [PromptSpec((ObjectSpec(held.colour, held.shape, _pick(rng, tuple(SIZES))),)),
                       PromptSpec((ObjectSpec(held.colour, held.shape, None, int(rng.integers(2, 4))),)),
                       PromptSpec(pair)])


def _draw_composition(rng, config) -> BenchmarkPrompt:
    if rng.random() < 0.5:
        return conjunction_prompt(*_distinct_pair(rng, _seen_objects(config)))
    return negation_prompt(_pick(rng, SHAPES), _pick(rng, COLOURS))


_DRAW = {"single_object": _draw_single_object, "two_objects": _draw_two_objects, "counting": _draw_counting,
         "colours": _draw_colours, "position": _draw_position, "attribute_binding": _draw_attribute_binding,
         "held_out": _draw_held_out, "composition": _draw_composition}


def random_prompt(category: str, rng: np.random.Generator, config: ShapesWorldConfig) -> BenchmarkPrompt:
    """One prompt of ``category`` with a random combination of the grammar's colours, shapes, sizes, counts and
    relations, in a random phrasing (``TEMPLATES`` or ``PARAPHRASES``, "a" or "one"); it carries its meaning."""
    drawn = _DRAW[category](rng, config)
    if isinstance(drawn, BenchmarkPrompt):
        return drawn
    text = format_prompt(drawn, int(rng.integers(num_phrasings(drawn))), _pick(rng, ("a", "one")), paraphrases=True)
    return _grammar_prompt(category, drawn, text)


def random_prompts(n: int = 48, seed: int = 0, config: ShapesWorldConfig | None = None,
                   categories: Sequence[str] = CATEGORIES) -> list[BenchmarkPrompt]:
    """``n`` distinct prompts drawn from the grammar by ``seed``, the categories taken in turn (every category
    once ``n >= len(categories)``; "held_out" only if ``config`` holds something out). Reproducible for a seed."""
    config = config or ShapesWorldConfig()
    unknown = set(categories) - set(CATEGORIES)
    if unknown or n < 1:
        raise ValueError(f"need n >= 1 and categories from {CATEGORIES}; got n={n}, unknown {sorted(unknown)}")
    if not (config.held_out_pairs or config.held_out_relations):
        categories = [c for c in categories if c != "held_out"]
    rng = np.random.default_rng([seed, 0x5EED])
    prompts: dict[str, BenchmarkPrompt] = {}
    for _ in range(100 * n):  # a repeated text is drawn again (fewer than n only if the categories run out)
        if len(prompts) == n:
            break
        prompt = random_prompt(categories[len(prompts) % len(categories)], rng, config)
        prompts.setdefault(prompt.text, prompt)
    return list(prompts.values())


def select_prompts(kind: str = "random", n: int = 48, seed: int = 0, config: ShapesWorldConfig | None = None,
                   categories: Sequence[str] | None = None) -> list[BenchmarkPrompt]:
    """The ``"fixed"`` list or ``n`` ``"random"`` prompts for ``seed``, keeping only ``categories`` if given."""
    if kind not in PROMPT_SETS:
        raise ValueError(f"unknown prompt set {kind!r}; choose one of {PROMPT_SETS}")
    wanted = tuple(categories or CATEGORIES)
    if not set(wanted) <= set(CATEGORIES):
        raise ValueError(f"unknown categories {sorted(set(wanted) - set(CATEGORIES))}; choose from {CATEGORIES}")
    if kind == "random":
        return random_prompts(n, seed, config, wanted)
    return [p for p in benchmark_prompts(config) if p.category in wanted]


def render_prompts(prompts: Sequence[str], seed: int, resolution: int = 32) -> torch.Tensor:
    """Ground-truth renders ``[B, 3, H, W]`` in ``[-1, 1]`` of prompts in the world's grammar: a perfect generator,
    and the reference set of the Frechet distance. Image ``i`` depends only on ``(seed, i, prompt)``."""
    specs = [parse_prompt(text) for text in prompts]
    for text, spec in zip(prompts, specs):
        if spec is None:
            raise ValueError(f"prompt {text!r} is not in the shapes-world grammar (noisecraft.shapes.world.TEMPLATES)")
    return render_specs(specs, seed, resolution)


def render_specs(specs: Sequence[PromptSpec], seed: int, resolution: int = 32) -> torch.Tensor:
    """Renders ``[B, 3, H, W]`` in ``[-1, 1]`` of prompt meanings; image ``i`` depends only on ``(seed, i, spec)``."""
    images = []
    for i, spec in enumerate(specs):
        scene = scene_from_spec(spec, np.random.default_rng([seed, i]))
        pixels = np.asarray(render(scene, resolution), dtype=np.float32)
        images.append(torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1.0)
    return torch.stack(images)


def render_benchmark_prompts(prompts: Sequence[BenchmarkPrompt], seed: int, resolution: int = 32) -> torch.Tensor:
    """Renders of benchmark prompts (any phrasing or composition): image ``i`` shows the first spec of prompt
    ``i``'s meaning; a perfect generator for :func:`run_benchmark`."""
    return render_specs([p.specs()[0] for p in prompts], seed, resolution)


def image_features(images: torch.Tensor) -> np.ndarray:
    """A fixed 30-d description ``[N, 30]`` of images ``[N, 3, H, W]`` in ``[-1, 1]``.

    Per image: the area of each palette colour (5), the foreground layout on a 4x4 grid (16), mean colour error of
    object pixels, background noise, mean gradient (sharpness), and RGB mean and standard deviation (6), all
    measured with the analyzer's background/palette blend fit (:func:`~noisecraft.shapes.analyzer.colour_fit`).
    """
    rgb = (images.detach().to("cpu", torch.float64).clamp(-1, 1) + 1) * 127.5  # [N, 3, H, W] in [0, 255]
    alpha, residual = colour_fit(rgb.permute(0, 2, 3, 1).numpy())  # [K, N, H, W]
    best = residual.argmin(axis=0)
    weight = np.clip(np.take_along_axis(alpha, best[None], axis=0)[0], 0.0, 1.0)  # how much object each pixel is
    occupancy = np.stack([(weight * (best == k)).mean(axis=(1, 2)) for k in range(len(COLOURS))], axis=1)
    layout = F.adaptive_avg_pool2d(torch.from_numpy(weight)[:, None], 4).flatten(1).numpy()
    objects, background = weight > 0.5, weight < 0.1
    best_residual = np.take_along_axis(residual, best[None], axis=0)[0]
    colour_error = (best_residual * objects).sum(axis=(1, 2)) / np.maximum(objects.sum(axis=(1, 2)), 1) / 255
    pixels = rgb.numpy() / 255
    luminance = pixels.mean(axis=1)
    noise = np.array([lum[bg].std() if bg.any() else 0.0 for lum, bg in zip(luminance, background)])
    gradient = sum(np.abs(np.diff(luminance, axis=axis)).mean(axis=(1, 2)) for axis in (1, 2))
    return np.concatenate([occupancy, layout, colour_error[:, None], noise[:, None], gradient[:, None],
                           pixels.mean(axis=(2, 3)), pixels.std(axis=(2, 3))], axis=1)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (Dowson & Landau, 1982; FID eq. 6):
    ``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2)``, the matrix root taken by eigendecomposition
    (all matrices are symmetric positive semi-definite)."""
    mu_a, mu_b = features_a.mean(axis=0), features_b.mean(axis=0)
    cov_a, cov_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    eigenvalues, eigenvectors = np.linalg.eigh(cov_a)
    root_a = eigenvectors @ np.diag(np.sqrt(np.clip(eigenvalues, 0, None))) @ eigenvectors.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def mean_pairwise_distance(features: np.ndarray) -> float:
    """Mean Euclidean distance over all pairs of rows: the spread of one prompt's images."""
    distances = np.linalg.norm(features[:, None] - features[None], axis=-1)
    n = len(features)
    return float(distances.sum() / (n * (n - 1)))


def _check_images(text: str, images: torch.Tensor) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images for {text!r} must be a tensor [n, 3, H, W] in [-1, 1], got {shape}")
    if not torch.isfinite(images).all():
        raise ValueError(f"images for {text!r} contain NaN or infinite values")
    return images


def failure(meaning: Sequence[PromptSpec | None], objects) -> str | None:
    """None if the detected ``objects`` satisfy one of the specs of ``meaning``, else the reason (see
    :func:`~noisecraft.shapes.analyzer.diagnose`) of the spec they came closest to (latest in ``FAILURES``)."""
    reasons = [diagnose(spec, objects) for spec in meaning]
    return None if None in reasons else max(reasons, key=FAILURES.index)


def describe_prompts(prompts: Sequence[BenchmarkPrompt]) -> list[dict]:
    """JSON-able prompts: text, category and meaning (each spec in the grammar's canonical phrasing)."""
    return [{"text": p.text, "category": p.category,
             "meaning": [None if spec is None else format_prompt(spec) for spec in p.specs()]} for p in prompts]


def score(images_by_prompt: Mapping[str, torch.Tensor], prompts: Sequence[BenchmarkPrompt] | None = None,
          config: ShapesWorldConfig | None = None, reference_seed: int = 0) -> dict:
    """Score generated images ``{prompt text: [n, 3, H, W] in [-1, 1]}`` (every text from ``prompts``, by default
    :func:`benchmark_prompts`), each against its prompt's meaning.

    Returns ``categories`` (fraction of matching images per category), ``overall`` (mean over the seen categories
    present), ``held_out``, ``composition``, ``phrasings`` (fraction of matching images of the seen categories'
    prompts written with a training template, and with a paraphrase: ``PARAPHRASES``), ``per_prompt``, ``prompts`` (text, category, meaning), ``failures``
    (per category, how many images failed for each reason of
    :func:`~noisecraft.shapes.analyzer.diagnose`: count, identity, binding, size, relation), ``fd`` (Frechet
    distance of :func:`image_features` to renders of the same prompts, ``n`` each, from ``reference_seed``),
    ``diversity`` and ``reference_diversity`` (mean pairwise feature distance within a prompt, averaged over
    prompts) and the image counts.
    """
    prompts = list(prompts) if prompts is not None else benchmark_prompts(config)
    by_text = {p.text: p for p in prompts}
    unknown = [text for text in images_by_prompt if text not in by_text]
    if unknown:
        raise ValueError(f"prompts {unknown[:3]} are not in the benchmark prompt set; score only benchmark prompts")
    if not images_by_prompt:
        raise ValueError("no images to score: images_by_prompt is empty")
    per_prompt, hits, failures, generated, reference, spreads, reference_spreads = {}, {}, {}, [], [], [], []
    for index, (text, images) in enumerate(images_by_prompt.items()):
        images, prompt = _check_images(text, images), by_text[text]
        meaning = prompt.specs()
        if None in meaning:
            raise ValueError(f"prompt {text!r} has no meaning in the shapes-world grammar; give BenchmarkPrompt a "
                             "meaning (noisecraft.shapes.world.PromptSpec)")
        reasons = [failure(meaning, analyze(image)) for image in images]
        found = [reason is None for reason in reasons]
        per_prompt[text] = sum(found) / len(found)
        hits.setdefault(prompt.category, []).extend(found)
        tally = failures.setdefault(prompt.category, dict.fromkeys(FAILURES, 0))
        for reason in filter(None, reasons):
            tally[reason] += 1
        specs = [meaning[i % len(meaning)] for i in range(len(images))]
        truth = render_specs(specs, seed=reference_seed + 7919 * index, resolution=images.shape[-1])
        features, truth_features = image_features(images), image_features(truth)
        generated.append(features)
        reference.append(truth_features)
        if len(images) > 1:
            spreads.append(mean_pairwise_distance(features))
            reference_spreads.append(mean_pairwise_distance(truth_features))
    categories = {c: sum(hits[c]) / len(hits[c]) for c in CATEGORIES if c in hits}
    seen = [categories[c] for c in SEEN_CATEGORIES if c in categories]
    return {
        "categories": categories,
        "overall": sum(seen) / len(seen) if seen else None,
        "held_out": categories.get("held_out"),
        "composition": categories.get("composition"),
        "phrasings": _phrasing_scores(per_prompt, by_text),
        "per_prompt": per_prompt,
        "prompts": describe_prompts([by_text[text] for text in per_prompt]),
        "failures": {c: failures[c] for c in CATEGORIES if c in failures},
        "fd": frechet_distance(np.concatenate(generated), np.concatenate(reference)),
        "diversity": float(np.mean(spreads)) if spreads else None,
        "reference_diversity": float(np.mean(reference_spreads)) if reference_spreads else None,
        "n_prompts": len(per_prompt),
        "n_images": sum(len(h) for h in hits.values()),
    }


def generation_batches(texts: Sequence[str], n_per_prompt: int, batch_size: int) -> list[list[str]]:
    """What :func:`run_benchmark` asks ``generate`` for: the plain prompts, each repeated ``n_per_prompt`` times,
    in batches of at most ``batch_size``; then one batch of ``n_per_prompt`` per composed prompt (``AND``,
    ``:weight``), since composition guides a whole batch with one prompt."""
    plain = [text for text in texts if not is_composed(text) for _ in range(n_per_prompt)]
    batches = [plain[start:start + batch_size] for start in range(0, len(plain), batch_size)]
    return batches + [[text] * n_per_prompt for text in texts if is_composed(text)]


def _phrasing_scores(per_prompt: Mapping[str, float], by_text: Mapping[str, BenchmarkPrompt]) -> dict:
    """Mean score of the seen categories' prompts by phrasing: a training template or a paraphrase."""
    groups: dict[str, list[float]] = {"training": [], "paraphrase": []}
    for text, share in per_prompt.items():
        if by_text[text].category in SEEN_CATEGORIES:
            groups["paraphrase" if is_paraphrase(text) else "training"].append(share)
    return {name: float(np.mean(shares)) if shares else None for name, shares in groups.items()}


def run_benchmark(generate: Callable[[list[str], int], torch.Tensor], n_per_prompt: int = 4, seed: int = 0,
                  batch_size: int = 64, prompts: Sequence[BenchmarkPrompt] | None = None,
                  config: ShapesWorldConfig | None = None) -> dict:
    """Generate ``n_per_prompt`` images for every benchmark prompt and :func:`score` them.

    ``generate(prompts, seed)`` is called on the batches of :func:`generation_batches` with seeds ``seed, seed + 1,
    ...``, and must return ``[len(prompts), 3, H, W]`` in ``[-1, 1]``. A batch of a composed prompt repeats one
    text: a text-to-image pipeline takes it as one shared prompt.
    """
    if n_per_prompt < 1 or batch_size < 1:
        raise ValueError(f"n_per_prompt and batch_size must be positive, got {n_per_prompt} and {batch_size}")
    prompts = list(prompts) if prompts is not None else benchmark_prompts(config)
    images_by_prompt: dict[str, list[torch.Tensor]] = {p.text: [] for p in prompts}
    for number, batch in enumerate(generation_batches(list(images_by_prompt), n_per_prompt, batch_size)):
        images = generate(batch, seed + number)
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[:2] != (len(batch), 3):
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"generate must return a tensor [{len(batch)}, 3, H, W] for {len(batch)} prompts, "
                             f"got {shape}")
        for text, image in zip(batch, images.detach().cpu().float()):
            images_by_prompt[text].append(image)
    stacked = {text: torch.stack(images) for text, images in images_by_prompt.items()}
    return score(stacked, prompts, config, reference_seed=seed + 1)


def format_table(results: dict) -> str:
    """A plain-text table of a :func:`score` result."""

    def cell(value) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [f"{'category':<22}{'accuracy':>10}", "-" * 32]
    lines += [f"{name:<22}{cell(value):>10}" for name, value in results["categories"].items()]
    lines += ["-" * 32, f"{'overall (seen)':<22}{cell(results['overall']):>10}",
              f"{'held out':<22}{cell(results['held_out']):>10}",
              f"{'composition':<22}{cell(results.get('composition')):>10}",
              *(f"{'  ' + name + ' phrasing':<22}{cell(value):>10}"
                for name, value in results.get("phrasings", {}).items()),
              f"{'frechet distance':<22}{cell(results['fd']):>10}",
              f"{'diversity':<22}{cell(results['diversity']):>10}",
              f"{'  (reference)':<22}{cell(results['reference_diversity']):>10}",
              f"{results['n_images']} images, {results['n_prompts']} prompts"]
    failures = {c: {r: n for r, n in tally.items() if n} for c, tally in results.get("failures", {}).items()}
    if any(failures.values()):  # results saved before failures were recorded have none
        lines += ["", "failed images by reason (count, identity, binding, size, relation; see diagnose):"]
        lines += [f"  {c:<20}" + ", ".join(f"{r} {n}" for r, n in tally.items()) for c, tally in failures.items()
                  if tally]
    return "\n".join(lines)


def save_results(results: dict, path: str | Path) -> Path:
    """Write a :func:`score` result as indented JSON (NaN-free: missing figures are null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = json.loads(json.dumps(results, default=float), parse_constant=lambda _: None)
    path.write_text(json.dumps(clean, indent=2) + "\n", encoding="utf-8")
    return path


def load_results(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no benchmark results at {path}; run the benchmark first")
    return json.loads(path.read_text(encoding="utf-8"))
