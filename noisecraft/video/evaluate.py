"""Scoring generated clips on the moving-shapes world, GenEval-style: exact checks, per category, with reasons.

A clip is **fully right** when
- every frame holds exactly the prompted objects (the shapes analyser, :func:`noisecraft.shapes.analyzer.diagnose`,
  on each frame: colours, shapes, nothing missing or extra) and the first frame shows the prompted size, and
- each prompted object moves as asked: its motion, measured from its centroid and size trajectories as the world's
  analyser does (:func:`noisecraft.video.world.classify_motion` on first and last frame), is the prompted one, and the
  trajectory is monotone along it (no frame steps back by more than ``STEP_TOLERANCE``; a still object never
  strays ``STILL_THRESHOLD`` from where it started).
Temporal consistency is reported beside it (:mod:`noisecraft.video.temporal`): identities kept along position
tracks, and flicker outside the objects. A clip's ``reasons`` name every failure found:

- ``missing_object`` / ``extra_object``: fewer / more objects than asked in some frame;
- ``wrong_colour`` / ``wrong_shape`` / ``binding``: a prompted colour or shape absent in some frame, or the right
  colours and shapes paired wrongly; ``wrong_size``: the first frame's size is not the prompted one;
- ``wrong_direction`` (moved the wrong way, or shrank instead of growing or the reverse), ``not_moving`` (asked to
  move, grow or shrink; stayed), ``wrong_motion`` (e.g. moved instead of growing, or moved when asked to stand
  still), ``not_monotone`` (right overall, but steps back on the way: e.g. shuffled frames), ``wanders`` (asked to
  stand still, ends where it began but strays). An object never found (or found in one frame) has no motion: its
  clip is not motion-right, and its reason is the frame failure (e.g. ``wrong_colour``);
- ``identity_swap`` / ``identity_change``: see :mod:`noisecraft.video.temporal`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Sequence

import numpy as np

from noisecraft.shapes.analyzer import DetectedObject, analyze, diagnose
from noisecraft.shapes.world import ObjectSpec, PromptSpec

from .eval_prompts import CATEGORIES, SEEN_CATEGORIES, VideoBenchmarkPrompt, random_prompts, reference_clips
from .temporal import IDENTITY_FAILURES, flicker, identity_check
from .world import DIRECTIONS, GROWTH_THRESHOLD, STILL_THRESHOLD, VideoPromptSpec, VideoWorldConfig, classify_motion

STEP_TOLERANCE = 0.01  # a centroid may step back this much (fraction of the frame; 1/3 pixel at 32x32) per frame
SIDE_TOLERANCE = 0.03  # a growing object's side may shrink by this fraction per frame (and vice versa)
FRAME_FAILURES = ("missing_object", "extra_object", "wrong_colour", "wrong_shape", "binding", "wrong_size")
MOTION_FAILURES = ("wrong_direction", "not_moving", "wrong_motion", "not_monotone", "wanders")
FAILURES = FRAME_FAILURES + MOTION_FAILURES + IDENTITY_FAILURES


@dataclass(frozen=True)
class ObjectMotion:
    """A prompted object's measured motion (``None`` if it was seen in fewer than two frames) and its path."""

    colour: str
    shape: str
    wanted: str
    measured: str | None
    monotone: bool
    displacement: tuple[float, float] | None
    growth: float | None
    frames_seen: int
    path: tuple[tuple[float, float, float], ...] = ()  # (x, y, area) in each frame it was seen


@dataclass(frozen=True)
class ClipVerdict:
    """The checks of one clip (see the module docstring); ``flicker`` in ``[0, 1]`` units (NaN: no background)."""

    frames_right: float
    every_frame: bool
    motion_right: bool
    fully_right: bool
    identity_kept: bool
    flicker: float
    reasons: tuple[str, ...]
    motions: tuple[ObjectMotion, ...] = field(default=())


def frame_failures(spec: VideoPromptSpec, objects: Sequence[DetectedObject]) -> set[str]:
    """Why one frame's detected ``objects`` are not the prompted ones (empty set: they are)."""
    wanted = [ObjectSpec(o.colour, o.shape) for o in spec.objects]  # sizes change in growth: checked on frame 0
    reason = diagnose(PromptSpec(tuple(wanted)), objects)
    if reason is None:
        return set()
    if reason == "count":
        return {"missing_object" if len(objects) < len(wanted) else "extra_object"}
    if reason == "binding":
        return {"binding"}
    found = set()  # "identity": a prompted colour or shape is not there
    if sorted(o.colour for o in objects) != sorted(w.colour for w in wanted):
        found.add("wrong_colour")
    if sorted(o.shape for o in objects) != sorted(w.shape for w in wanted):
        found.add("wrong_shape")
    return found


def _monotone(motion: str, track: Sequence[DetectedObject]) -> bool:
    centroids = np.array([o.centroid for o in track])
    if motion in DIRECTIONS:
        steps = np.diff(centroids, axis=0) @ np.array(DIRECTIONS[motion])
        return bool((steps >= -STEP_TOLERANCE).all())
    if motion in ("grows", "shrinks"):
        ratios = np.diff(np.log(np.sqrt([o.area for o in track])))
        sign = 1.0 if motion == "grows" else -1.0
        return bool((sign * ratios >= math.log(1 - SIDE_TOLERANCE)).all())
    return bool((np.abs(centroids - centroids[0]).max(initial=0.0) < STILL_THRESHOLD)
                and all(1 / GROWTH_THRESHOLD < math.sqrt(o.area / track[0].area) < GROWTH_THRESHOLD for o in track))


def _motion_failure(wanted: str, measured: str) -> str:
    if {wanted, measured} <= set(DIRECTIONS) or {wanted, measured} == {"grows", "shrinks"}:
        return "wrong_direction"
    return "not_moving" if measured == "still" else "wrong_motion"


def identity_tracks(detections: Sequence[Sequence[DetectedObject]]) -> dict[tuple[str, str], list[DetectedObject]]:
    """Per (colour, shape), its detections in frame order (an identity seen twice in a frame keeps the first, and
    objects of unknown shape are skipped, as :func:`noisecraft.video.world.analyze_clip` does)."""
    tracks: dict[tuple[str, str], list[DetectedObject]] = {}
    for found in detections:
        seen = set()
        for o in found:
            key = (o.colour, o.shape)
            if o.shape != "unknown" and key not in seen:
                seen.add(key)
                tracks.setdefault(key, []).append(o)
    return tracks


def score_clip(frames: Sequence, spec: VideoPromptSpec) -> ClipVerdict:
    """All checks of one clip (PIL frames, uint8 arrays or ``[3, H, W]`` tensors) against its prompt's meaning."""
    if spec is None or not spec.objects:
        raise ValueError("score_clip needs the prompt's meaning (a VideoPromptSpec from parse_prompt)")
    if len(frames) < 2:
        raise ValueError(f"a clip needs at least 2 frames to show motion, got {len(frames)}")
    detections = [analyze(frame) for frame in frames]
    per_frame = [frame_failures(spec, found) for found in detections]
    reasons = set().union(*per_frame)
    tracks = identity_tracks(detections)
    motions = []
    for want in spec.objects:
        track = tracks.get((want.colour, want.shape), [])
        if want.size is not None and track and track[0].size != want.size:
            reasons.add("wrong_size")
        if len(track) < 2:
            motions.append(ObjectMotion(want.colour, want.shape, want.motion, None, False, None, None, len(track)))
            continue
        first, last = track[0], track[-1]
        displacement = (last.centroid[0] - first.centroid[0], last.centroid[1] - first.centroid[1])
        growth = float(np.sqrt(last.area / first.area))
        measured, monotone = classify_motion(displacement, growth), _monotone(want.motion, track)
        path = tuple((round(o.centroid[0], 4), round(o.centroid[1], 4), round(o.area, 5)) for o in track)
        motions.append(ObjectMotion(want.colour, want.shape, want.motion, measured, monotone, displacement, growth,
                                    len(track), path))
        if measured != want.motion:
            reasons.add(_motion_failure(want.motion, measured))
        elif not monotone:
            reasons.add("wanders" if want.motion == "still" else "not_monotone")
    identity = identity_check(detections)
    reasons |= set(identity.reasons)
    every_frame = not any(per_frame) and "wrong_size" not in reasons
    motion_right = all(m.measured == m.wanted and m.monotone for m in motions)
    return ClipVerdict(frames_right=sum(not f for f in per_frame) / len(frames), every_frame=every_frame,
                       motion_right=motion_right, fully_right=every_frame and motion_right,
                       identity_kept=identity.kept, flicker=flicker(frames),
                       reasons=tuple(r for r in FAILURES if r in reasons), motions=tuple(motions))


# ------------------------------------------------------------------------------------------------ aggregation

_MEASURES = ("fully_right", "every_frame", "frames_right", "motion_right", "identity_kept", "flicker")


def _summary(verdicts: Sequence[ClipVerdict]) -> dict | None:
    """Means of each measure over ``verdicts`` (flicker over the clips that have a background), or None."""
    if not verdicts:
        return None
    out = {name: float(np.mean([getattr(v, name) for v in verdicts])) for name in _MEASURES[:-1]}
    flickers = [v.flicker for v in verdicts if not math.isnan(v.flicker)]
    return {**out, "flicker": float(np.mean(flickers)) if flickers else None, "clips": len(verdicts)}


def evaluate_clips(prompts: Sequence[VideoBenchmarkPrompt], clips: Sequence[Sequence[Sequence]]) -> dict:
    """Score ``clips[i]`` (the clips generated for ``prompts[i]``, each a list of frames) and summarise: per
    category, seen (the four seen categories pooled) and held out, by phrasing, failure tallies (clips failing for
    each reason) and per-prompt results."""
    if len(prompts) != len(clips):
        raise ValueError(f"got {len(prompts)} prompts but clips for {len(clips)}")
    verdicts = {p.text: [score_clip(frames, p.spec) for frames in group] for p, group in zip(prompts, clips)}
    by_category = {c: [v for p in prompts if p.category == c for v in verdicts[p.text]] for c in CATEGORIES}
    seen = [v for p in prompts if not p.held_out for v in verdicts[p.text]]
    held = [v for p in prompts if p.held_out for v in verdicts[p.text]]
    phrasing = {name: [v for p in prompts if not p.held_out and p.training_phrasing == flag for v in verdicts[p.text]]
                for name, flag in (("training", True), ("other", False))}
    failures = {c: {r: sum(r in v.reasons for v in vs) for r in FAILURES} for c, vs in by_category.items() if vs}
    per_prompt = {p.text: {"category": p.category, "held_out": p.held_out, "training_phrasing": p.training_phrasing,
                           "fully_right": float(np.mean([v.fully_right for v in verdicts[p.text]])),
                           "clips": [{**asdict(v), "motions": [asdict(m) for m in v.motions]}
                                     for v in verdicts[p.text]]}
                  for p in prompts}
    return {"categories": {c: _summary(vs) for c, vs in by_category.items()},
            "seen": _summary(seen), "held_out": _summary(held),
            "phrasings": {name: _summary(vs) for name, vs in phrasing.items()},
            "failures": failures, "per_prompt": per_prompt,
            "n_prompts": len(prompts), "n_clips": sum(len(g) for g in clips)}


def format_table(record: dict) -> str:
    """A plain-text table of an :func:`evaluate_clips` record (and FD-MSC when the record has it)."""

    def cell(summary: dict | None, name: str) -> str:
        value = None if summary is None else summary.get(name)
        return "-" if value is None else f"{value:.3f}"

    columns = ("fully_right", "every_frame", "motion_right", "identity_kept", "flicker")
    header = f"{'category':<16}" + "".join(f"{c:>15}" for c in columns) + f"{'clips':>7}"
    lines = [header, "-" * len(header)]
    rows = [*record["categories"].items(), ("seen", record["seen"]), ("held out", record["held_out"]),
            *((f"  {k} phrasing", v) for k, v in record["phrasings"].items())]
    for name, summary in rows:
        if name in SEEN_CATEGORIES + ("seen",) or summary is not None:
            count = summary["clips"] if summary else 0
            lines.append(f"{name:<16}" + "".join(f"{cell(summary, c):>15}" for c in columns) + f"{count:>7}")
    if "fd_msc" in record:
        lines.append(f"FD-MSC (Frechet distance in the moving-shapes classifier's features): {record['fd_msc']:.3f}"
                     + (f"  [world vs world: {record['fd_msc_world']:.3f}]" if "fd_msc_world" in record else ""))
    tallies = {c: {r: n for r, n in t.items() if n} for c, t in record["failures"].items()}
    if any(tallies.values()):
        lines += ["", "failed clips by reason:"]
        lines += [f"  {c:<16}" + ", ".join(f"{r} {n}" for r, n in t.items()) for c, t in tallies.items() if t]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ a whole model


def model_world(model_dir) -> tuple[VideoWorldConfig, bool]:
    """The world a model folder was trained on (its held-out combinations), and whether it says so: a model trained
    on a clip folder has none, and is scored against the default world's grammar."""
    from noisecraft.training.checkpoint import read_config, resolve_model_dir

    world = (read_config(resolve_model_dir(model_dir)).get("model_config") or {}).get("world")
    if not world:
        return VideoWorldConfig(), False
    known = {f.name for f in fields(VideoWorldConfig)}
    return VideoWorldConfig.from_dict({k: v for k, v in world.items() if k in known}), True


def evaluate_model(pipeline, model_dir, *, prompts: int = 24, per_prompt: int = 2, frames: int | None = None,
                   steps: int | None = None, guidance: float | None = None, seed: int = 0, classifier=None,
                   log: Callable[[str], None] | None = None) -> dict:
    """Generate ``per_prompt`` clips for each of ``prompts`` random prompts (:func:`random_prompts` of ``seed``,
    in the model's world), score them (:func:`evaluate_clips`) and measure FD-MSC against world clips of the same
    prompts (and, as the floor a perfect model would reach, FD-MSC of a second world sample).

    ``pipeline.generate({"prompt", "batch", "frames", "steps", "guidance"}, seed=seed + k)`` makes prompt ``k``'s
    clips (lists of PIL frames); options left None take the pipeline's defaults."""
    from .classifier import fd_msc, load_classifier

    if isinstance(per_prompt, bool) or not isinstance(per_prompt, int) or per_prompt < 1:
        raise ValueError(f"--per-prompt must be a positive integer, got {per_prompt!r}")
    world, from_model = model_world(model_dir)
    prompt_set = random_prompts(prompts, seed, world)
    start = time.perf_counter()
    options = {k: v for k, v in (("frames", frames), ("steps", steps), ("guidance", guidance)) if v is not None}
    generated, references, world_sample, parameters = [], [], [], None
    for k, prompt in enumerate(prompt_set):
        began = time.perf_counter()
        generation = pipeline.generate({"prompt": prompt.text, "batch": per_prompt, **options}, seed=seed + k)
        clips = [list(clip) for clip in generation.items]
        if not clips:
            raise ValueError(f"the pipeline returned no clips for {prompt.text!r} ({'; '.join(generation.notes)})")
        parameters = dict(generation.parameters) if parameters is None else {  # what every prompt shared
            key: value for key, value in parameters.items() if generation.parameters.get(key) == value}
        length, resolution = len(clips[0]), clips[0][0].size[0]
        references += [f for _, f in reference_clips(prompt, per_prompt, length, 10_000 + k, resolution)]
        world_sample += [f for _, f in reference_clips(prompt, per_prompt, length, 20_000 + k, resolution)]
        generated.append(clips)
        if log:
            log(f"[{k + 1}/{len(prompt_set)}] {prompt.category:<14} {prompt.text!r}: {len(clips)} clips of {length} "
                f"frames in {time.perf_counter() - began:.1f} s")
    record = evaluate_clips(prompt_set, generated)
    classifier = classifier or load_classifier()
    flat = [clip for group in generated for clip in group]
    record["fd_msc"] = fd_msc(flat, references, classifier)
    record["fd_msc_world"] = fd_msc(world_sample, references, classifier)
    record["settings"] = {"model": str(model_dir), "world": world.to_dict(), "world_from_model": from_model,
                          "prompts": len(prompt_set), "per_prompt": per_prompt, "seed": seed,
                          "generation": parameters, "seconds": round(time.perf_counter() - start, 1)}
    return record
