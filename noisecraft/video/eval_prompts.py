"""Prompts of the video benchmark, drawn at random per seed from the moving-shapes grammar, with their meaning.

Categories (GenEval-style, one skill each): ``single_motion`` (one object moving left/right/up/down),
``two_objects`` (two objects of different colours and shapes moving differently), ``growth`` (one object growing or
shrinking), ``still`` (one object standing still) and ``held_out`` (a held-out (colour, shape) pair or (colour, shape,
motion) triple, alone or beside another object: never in a training clip). Phrasings vary as the grammar allows:
with or without the first-frame size, "a" or "one", and both pair templates ("and", "together with"); a prompt is
in the *training* phrasing when it reads exactly as a training caption would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from noisecraft.shapes.world import COLOURS, SHAPES, SIZES

from .world import (DIRECTIONS, MOTION_PHRASES, PAIR_TEMPLATES, Clip, MotionSpec, VideoPromptSpec, VideoWorldConfig,
                    clip_from_spec, is_held_out, parse_prompt, render_clip)

CATEGORIES = ("single_motion", "two_objects", "growth", "still", "held_out")
SEEN_CATEGORIES = CATEGORIES[:4]
ARTICLES = ("a", "one")


@dataclass(frozen=True)
class VideoBenchmarkPrompt:
    """A prompt, its category, its meaning (``spec``), whether it names a held-out combination and whether it reads
    as a training caption would (``training_phrasing``)."""

    category: str
    text: str
    spec: VideoPromptSpec
    held_out: bool
    training_phrasing: bool


def _pick(rng: np.random.Generator, items: Sequence):
    return items[int(rng.integers(len(items)))]


def _seen_identities(config: VideoWorldConfig) -> list[tuple[str, str]]:
    return [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in config.held_out_pairs]


def _seen_motions(identity: tuple[str, str], motions: Sequence[str], config: VideoWorldConfig) -> list[str]:
    return [m for m in motions if (*identity, m) not in config.held_out_motions]


def _single(rng, identity: tuple[str, str], motion: str) -> VideoPromptSpec:
    """One object; its size named half of the time (growing starts small, shrinking large, as in the world)."""
    size = {"grows": "small", "shrinks": "large"}.get(motion) or _pick(rng, tuple(SIZES))
    return VideoPromptSpec((MotionSpec(*identity, motion, size if rng.random() < 0.5 else None),))


def _pair(rng, first: MotionSpec, identities: list[tuple[str, str]], config: VideoWorldConfig) -> VideoPromptSpec:
    """``first`` beside another object of another colour and shape, moving differently (a seen combination)."""
    other = _pick(rng, [i for i in identities if i[0] != first.colour and i[1] != first.shape])
    motion = _pick(rng, [m for m in _seen_motions(other, MOTION_PHRASES, config) if m != first.motion])
    second = MotionSpec(*other, motion)
    return VideoPromptSpec((first, second) if rng.random() < 0.5 else (second, first))


def _draw(category: str, rng: np.random.Generator, config: VideoWorldConfig) -> VideoPromptSpec:
    seen = _seen_identities(config)
    if category in ("single_motion", "growth", "still"):
        motions = {"single_motion": tuple(DIRECTIONS), "growth": ("grows", "shrinks"), "still": ("still",)}[category]
        while True:
            identity = _pick(rng, seen)
            allowed = _seen_motions(identity, motions, config)
            if allowed:
                return _single(rng, identity, _pick(rng, allowed))
    if category == "two_objects":
        identity = _pick(rng, seen)
        return _pair(rng, MotionSpec(*identity, _pick(rng, _seen_motions(identity, MOTION_PHRASES, config))), seen,
                     config)
    if category != "held_out":
        raise ValueError(f"unknown category {category!r}; choose from {CATEGORIES}")
    forms = [(*pair, None) for pair in config.held_out_pairs] + list(config.held_out_motions)
    colour, shape, motion = _pick(rng, forms)
    motion = motion or _pick(rng, tuple(MOTION_PHRASES))
    if rng.random() < 0.5:
        return _single(rng, (colour, shape), motion)
    return _pair(rng, MotionSpec(colour, shape, motion), seen, config)


def phrase(spec: VideoPromptSpec, article: str = "a", template: int = 0) -> str:
    """The text of ``spec`` with ``article`` ("a" or "one") and pair template ``template``."""
    words = [" ".join([article, *([o.size] if o.size else []), o.colour, o.shape, MOTION_PHRASES[o.motion]])
             for o in spec.objects]
    return words[0] if len(words) == 1 else PAIR_TEMPLATES[template].format(a=words[0], b=words[1])


def random_prompts(n: int = 24, seed: int = 0, config: VideoWorldConfig | None = None,
                   categories: Sequence[str] = CATEGORIES) -> list[VideoBenchmarkPrompt]:
    """``n`` distinct prompts drawn by ``seed``, the categories taken in turn (each once when ``n >=
    len(categories)``; "held_out" only if ``config`` holds something out), in random phrasings."""
    config = config or VideoWorldConfig()
    unknown = set(categories) - set(CATEGORIES)
    if unknown or isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"need an integer n >= 1 and categories from {CATEGORIES}; got n={n!r}, unknown "
                         f"{sorted(unknown)}")
    if not (config.held_out_pairs or config.held_out_motions):
        categories = [c for c in categories if c != "held_out"]
    rng = np.random.default_rng([seed, 0x71DE0])
    prompts: dict[str, VideoBenchmarkPrompt] = {}
    for _ in range(100 * n):  # a repeated text is drawn again
        if len(prompts) == n:
            break
        category = categories[len(prompts) % len(categories)]
        spec = _draw(category, rng, config)
        article, template = _pick(rng, ARTICLES), int(rng.integers(len(PAIR_TEMPLATES)))
        text = phrase(spec, article, template)
        single = len(spec.objects) == 1
        training = article == "a" and (spec.objects[0].size is not None if single else True)
        prompts.setdefault(text, VideoBenchmarkPrompt(category, text, spec, is_held_out(spec, config), training))
    return list(prompts.values())


def reference_clips(prompt: VideoBenchmarkPrompt | VideoPromptSpec | str, n: int, frames: int, seed: int,
                    resolution: int = 32) -> list[tuple[Clip, list]]:
    """``n`` world clips (and their rendered frames) satisfying the prompt: a perfect generator's output and the
    reference set of FD-MSC. Clip ``i`` depends only on ``(seed, i, prompt)``."""
    spec = prompt.spec if isinstance(prompt, VideoBenchmarkPrompt) else prompt
    if isinstance(spec, str):
        text, spec = spec, parse_prompt(spec)
        if spec is None:
            raise ValueError(f"prompt {text!r} is not in the moving-shapes grammar, e.g. 'a red circle moving right'")
    clips = [clip_from_spec(spec, np.random.default_rng([seed, i]), frames) for i in range(n)]
    return [(clip, render_clip(clip, resolution)) for clip in clips]
