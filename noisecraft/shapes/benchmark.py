"""A GenEval-style benchmark on the shapes world: fixed prompts, exact checks, a Frechet distance and diversity.

Following GenEval (Ghosh et al., 2023), each prompt belongs to a category (one object, two objects, counting,
colours, position, attribute binding) and an image scores 1 when the analyzer finds exactly the requested scene.
A category's score is the fraction of its images that match; "overall" averages the seen categories, and the
held-out combinations (never in training scenes, see ``ShapesWorldConfig``) are reported on their own.

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
from .world import (COLOURS, SHAPES, SIZES, ObjectSpec, PromptSpec, ShapesWorldConfig, format_prompt, is_held_out,
                    parse_prompt, relation_spec, render, scene_from_spec)

CATEGORIES = ("single_object", "two_objects", "counting", "colours", "position", "attribute_binding", "held_out")
SEEN_CATEGORIES = CATEGORIES[:-1]


@dataclass(frozen=True)
class BenchmarkPrompt:
    category: str
    text: str


def _spread(items: list, k: int) -> list:
    """``k`` items taken at even intervals: a fixed, varied subset of a long ordered list."""
    return [items[i * len(items) // k] for i in range(min(k, len(items)))]


def benchmark_prompts(config: ShapesWorldConfig | None = None) -> list[BenchmarkPrompt]:
    """The fixed prompt list (no randomness: ordered candidate lists sampled at even intervals).

    Seen categories use only training combinations; "held_out" asks for each held-out (colour, shape) pair alone
    at both sizes, counted, and next to another object, and for each held-out relation in two phrasings.
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
    return [BenchmarkPrompt(category, format_prompt(spec, template)) for category, spec, template in prompts]


def render_prompts(prompts: Sequence[str], seed: int, resolution: int = 32) -> torch.Tensor:
    """Ground-truth renders ``[B, 3, H, W]`` in ``[-1, 1]`` of prompts in the world's grammar: a perfect generator,
    and the reference set of the Frechet distance. Image ``i`` depends only on ``(seed, i, prompt)``."""
    images = []
    for i, text in enumerate(prompts):
        spec = parse_prompt(text)
        if spec is None:
            raise ValueError(f"prompt {text!r} is not in the shapes-world grammar (noisecraft.shapes.world.TEMPLATES)")
        scene = scene_from_spec(spec, np.random.default_rng([seed, i]))
        pixels = np.asarray(render(scene, resolution), dtype=np.float32)
        images.append(torch.from_numpy(pixels).permute(2, 0, 1) / 127.5 - 1.0)
    return torch.stack(images)


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


def score(images_by_prompt: Mapping[str, torch.Tensor], prompts: Sequence[BenchmarkPrompt] | None = None,
          config: ShapesWorldConfig | None = None, reference_seed: int = 0) -> dict:
    """Score generated images ``{prompt text: [n, 3, H, W] in [-1, 1]}`` (every text from ``prompts``, by default
    :func:`benchmark_prompts`).

    Returns ``categories`` (fraction of matching images per category), ``overall`` (mean over the seen categories
    present), ``held_out``, ``per_prompt``, ``failures`` (per category, how many images failed for each reason of
    :func:`~noisecraft.shapes.analyzer.diagnose`: count, identity, binding, size, relation), ``fd`` (Frechet
    distance of :func:`image_features` to renders of the same prompts, ``n`` each, from ``reference_seed``),
    ``diversity`` and ``reference_diversity`` (mean pairwise feature distance within a prompt, averaged over
    prompts) and the image counts.
    """
    prompts = list(prompts) if prompts is not None else benchmark_prompts(config)
    category_of = {p.text: p.category for p in prompts}
    unknown = [text for text in images_by_prompt if text not in category_of]
    if unknown:
        raise ValueError(f"prompts {unknown[:3]} are not in the benchmark prompt set; score only benchmark prompts")
    if not images_by_prompt:
        raise ValueError("no images to score: images_by_prompt is empty")
    per_prompt, hits, failures, generated, reference, spreads, reference_spreads = {}, {}, {}, [], [], [], []
    for index, (text, images) in enumerate(images_by_prompt.items()):
        images = _check_images(text, images)
        spec = parse_prompt(text)
        reasons = [diagnose(spec, analyze(image)) for image in images]
        found = [reason is None for reason in reasons]
        per_prompt[text] = sum(found) / len(found)
        hits.setdefault(category_of[text], []).extend(found)
        tally = failures.setdefault(category_of[text], dict.fromkeys(FAILURES, 0))
        for reason in filter(None, reasons):
            tally[reason] += 1
        truth = render_prompts([text] * len(images), seed=reference_seed + 7919 * index, resolution=images.shape[-1])
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
        "per_prompt": per_prompt,
        "failures": {c: failures[c] for c in CATEGORIES if c in failures},
        "fd": frechet_distance(np.concatenate(generated), np.concatenate(reference)),
        "diversity": float(np.mean(spreads)) if spreads else None,
        "reference_diversity": float(np.mean(reference_spreads)) if reference_spreads else None,
        "n_prompts": len(per_prompt),
        "n_images": sum(len(h) for h in hits.values()),
    }


def run_benchmark(generate: Callable[[list[str], int], torch.Tensor], n_per_prompt: int = 4, seed: int = 0,
                  batch_size: int = 64, prompts: Sequence[BenchmarkPrompt] | None = None,
                  config: ShapesWorldConfig | None = None) -> dict:
    """Generate ``n_per_prompt`` images for every benchmark prompt and :func:`score` them.

    ``generate(prompts, seed)`` is called on batches of at most ``batch_size`` prompts (each prompt repeated
    ``n_per_prompt`` times) with seeds ``seed, seed + 1, ...``, and must return ``[len(prompts), 3, H, W]`` in
    ``[-1, 1]``.
    """
    if n_per_prompt < 1 or batch_size < 1:
        raise ValueError(f"n_per_prompt and batch_size must be positive, got {n_per_prompt} and {batch_size}")
    prompts = list(prompts) if prompts is not None else benchmark_prompts(config)
    texts = [p.text for p in prompts for _ in range(n_per_prompt)]
    batches = []
    for number, start in enumerate(range(0, len(texts), batch_size)):
        batch = texts[start:start + batch_size]
        images = generate(batch, seed + number)
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[:2] != (len(batch), 3):
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"generate must return a tensor [{len(batch)}, 3, H, W] for {len(batch)} prompts, "
                             f"got {shape}")
        batches.append(images.detach().cpu().float())
    images = torch.cat(batches).reshape(len(prompts), n_per_prompt, *batches[0].shape[1:])
    return score({p.text: images[i] for i, p in enumerate(prompts)}, prompts, config, reference_seed=seed + 1)


def format_table(results: dict) -> str:
    """A plain-text table of a :func:`score` result."""

    def cell(value) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [f"{'category':<22}{'accuracy':>10}", "-" * 32]
    lines += [f"{name:<22}{cell(value):>10}" for name, value in results["categories"].items()]
    lines += ["-" * 32, f"{'overall (seen)':<22}{cell(results['overall']):>10}",
              f"{'held out':<22}{cell(results['held_out']):>10}",
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
