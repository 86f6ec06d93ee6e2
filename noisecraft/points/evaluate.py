"""``evaluate_model``: a points model measured on its world: prompt correctness (the analyser) on seen and held-out
prompts (and two-part scene prompts when the model's world has scenes), and the PointFlow metrics
(:mod:`noisecraft.points.metrics`) of all generated clouds against a reference set drawn from the world with the
same prompts (same count per prompt, same number of points)."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from noisecraft.points.analyzer import analyze, matches_prompt
from noisecraft.points.metrics import evaluate
from noisecraft.points.scenes import analyze_scene, matches_scene, parse_scene, reference_scenes, scene_caption
from noisecraft.points.world import WorldConfig, _rng, caption, make_sample, parse_caption


def world_prompts(world: dict | None) -> tuple[list[str], list[str]]:
    """(seen, held-out) prompts of a model's world config (the default world when None)."""
    config = WorldConfig(**(world or {}))
    return ([caption(s, p) for s, p in config.combinations("train")],
            [caption(s, p) for s, p in config.combinations("held_out")])


def scene_prompts(world: dict | None, count: int = 6) -> list[str]:
    """``count`` two-part prompts of seen pairs (a fixed spread over them) when the world has scenes, else []."""
    config = WorldConfig(**(world or {}))
    if not config.scenes:
        return []
    pairs = config.combinations("train")
    return [scene_caption((*pairs[(5 * k) % len(pairs)], "small" if k % 2 else None),
                          (*pairs[(5 * k + 3) % len(pairs)], None)) for k in range(count)]


def judge(cloud: np.ndarray, prompt: str, *, upright: bool = True) -> tuple[bool, list[str]]:
    """The analyser's verdict on ``cloud [N, 3]`` for a single-object or a two-part prompt, with reasons."""
    if parse_scene(prompt) is not None:
        return matches_scene(analyze_scene(cloud, upright=upright), prompt)
    return matches_prompt(analyze(cloud, upright=upright), prompt, upright=upright)


def reference_clouds(prompt: str, count: int, *, points: int = 2048, seed: int = 1234,
                     orientation: str = "upright") -> np.ndarray:
    """``count`` world clouds ``[count, points, 3]`` of what ``prompt`` asks for (shape, proportion, size when
    named, else either): the reference set that generated clouds of that prompt are measured against."""
    parsed = parse_caption(prompt)
    if parsed is None:
        raise ValueError(f"{prompt!r} names no shape of the points world")
    clouds = []
    for i in range(count):
        rng = _rng(seed, i, prompt)
        clouds.append(make_sample(parsed["shape"], parsed["proportion"], points=points, size=parsed["size"],
                                  orientation=orientation, rng=rng).points)
    return np.stack(clouds)


def world_reference(prompt: str, count: int, *, points: int, seed: int, orientation: str) -> np.ndarray:
    if parse_scene(prompt) is not None:
        return reference_scenes(prompt, count, points=points, seed=seed, orientation=orientation)
    return reference_clouds(prompt, count, points=points, seed=seed, orientation=orientation)


def evaluate_model(pipeline, *, per_prompt: int = 4, points: int | None = None, steps: int = 16,
                   guidance: float = 2.0, sampler: str = "heun", seed: int = 0, metrics: tuple[str, ...] = ("cd",),
                   held_out: bool = True, prompts: list[str] | None = None,
                   log: Callable[[str], None] | None = None, clouds_out: dict | None = None) -> dict[str, Any]:
    """The evaluation record of ``pipeline`` (a :class:`~noisecraft.points.pipeline.PointsPipeline`);
    ``clouds_out`` (a dict) receives the generated clouds per prompt, e.g. to save them next to the record."""
    seen, unseen = world_prompts(pipeline.spec.world)
    if prompts is not None:
        seen, unseen = list(prompts), []
    groups = {"seen": seen, "held_out": unseen if held_out else [],
              "scenes": scene_prompts(pipeline.spec.world) if prompts is None else []}
    points = points or pipeline.spec.points
    orientation = (pipeline.spec.world or {}).get("orientation", "upright")
    start = time.perf_counter()
    record: dict[str, Any] = {"model": pipeline.source, "per_prompt": per_prompt, "points": points, "steps": steps,
                              "guidance": guidance, "sampler": sampler, "seed": seed, "prompts": {}}
    all_generated, all_reference = [], []
    for group, names in groups.items():
        correct = 0
        for k, prompt in enumerate(names):
            clouds, _ = pipeline.sample(per_prompt, prompt=prompt, points=points, steps=steps, guidance=guidance,
                                        sampler=sampler, seed=seed + 1000 * k)
            verdicts = []
            for cloud in clouds:
                ok, reasons = judge(cloud[:, :3], prompt, upright=orientation != "random")
                verdicts.append({"ok": ok, "reasons": reasons})
            hits = sum(v["ok"] for v in verdicts)
            correct += hits
            record["prompts"][prompt] = {"group": group, "correct": hits / per_prompt,
                                         "failures": [v["reasons"] for v in verdicts if not v["ok"]][:3]}
            all_generated.append(clouds[:, :, :3])
            if clouds_out is not None:
                clouds_out[prompt] = clouds
            all_reference.append(world_reference(prompt, per_prompt, points=points, seed=10_000 + k,
                                                 orientation=orientation))
            if log:
                log(f"{group:8s} {prompt!r}: {hits}/{per_prompt} correct")
        record[f"correct_{group}"] = correct / (per_prompt * len(names)) if names else None
    record["by_shape"] = by_shape(record["prompts"])
    record["pointflow"] = evaluate(np.concatenate(all_generated), np.concatenate(all_reference), metrics=metrics)
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


def by_shape(prompts: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Prompt correctness per group and primitive ("seen" -> {"box": 0.1, ...}; a scene counts for its first
    part's shape), the mean over that shape's prompts."""
    table: dict[str, dict[str, list[float]]] = {}
    for prompt, entry in prompts.items():
        parsed = parse_caption(prompt)
        shape = parsed["shape"] if parsed else "?"
        table.setdefault(entry["group"], {}).setdefault(shape, []).append(entry["correct"])
    return {group: {shape: round(float(np.mean(v)), 4) for shape, v in shapes.items()}
            for group, shapes in table.items()}


def world_baseline(*, per_prompt: int = 4, points: int = 512, metrics: tuple[str, ...] = ("cd",),
                   world: dict | None = None) -> dict[str, Any]:
    """The metrics of a second, independent world sample against the reference: what a perfect model scores
    (prompt correctness is the analyser's accuracy; 1-NNA is below 0.5 under this per-prompt pooled protocol, since
    a cloud's nearest neighbour is often one of the other set's clouds of the same prompt: 0.375 at 4 per prompt)."""
    seen, unseen = world_prompts(world)
    generated, reference, correct = [], [], 0
    for k, prompt in enumerate(seen + unseen):
        clouds = reference_clouds(prompt, per_prompt, points=points, seed=777 + k)
        correct += sum(matches_prompt(analyze(c), prompt)[0] for c in clouds)
        generated.append(clouds)
        reference.append(reference_clouds(prompt, per_prompt, points=points, seed=10_000 + k))
    return {"correct": correct / (per_prompt * len(seen + unseen)),
            "pointflow": evaluate(np.concatenate(generated), np.concatenate(reference), metrics=metrics)}
