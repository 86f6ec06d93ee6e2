"""Prompt syntax of Composable Diffusion (Liu et al., 2022, "Compositional Visual Generation with Composable
Diffusion Models"): concepts joined by ``AND``, each with an optional weight ``:w``.

``"a red circle AND a blue square:1.5"`` is two concepts with weights 1 and 1.5. A negative weight
(``"a red circle AND a blue square:-1"``) is the paper's negation, "NOT a blue square" (its Sec. 4.2). Only
the upper-case word ``AND`` separates concepts, so "and" inside a caption ("a red circle and a blue square") stays
one concept.

Weights are relative: :func:`guidance_shares` divides them by the total positive weight, so that a composition is
guided as strongly as a single prompt at the same guidance scale (see ``noisecraft.images.text2image``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_AND = re.compile(r"(?<!\S)AND(?!\S)")  # the word AND, delimited by spaces or the ends
# A trailing ":<number>" is a weight; any other colon belongs to the prompt text.
_WEIGHT = re.compile(r"^(?P<text>.*?)\s*:\s*(?P<weight>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*$", re.DOTALL)


@dataclass(frozen=True)
class Concept:
    """One term of a composed prompt: its text and its relative weight w_i (see :func:`guidance_shares`)."""

    text: str
    weight: float = 1.0


def parse_composition(prompt: str) -> list[Concept]:
    """Split ``prompt`` into weighted concepts: ``"A AND B:1.5 AND C:-0.5"`` -> [A (1), B (1.5), C (-0.5)].

    Raises ValueError for an empty prompt, an empty concept ("A AND AND B", "A AND :2") or a weight of 0 (a
    concept that contributes nothing is almost always a typo).
    """
    if not isinstance(prompt, str):
        raise TypeError(f"a prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError('the prompt is empty; describe the image to generate, e.g. "a small red circle"')
    concepts = []
    for part in _AND.split(prompt.strip()):
        part = part.strip()
        match = _WEIGHT.match(part)
        text, weight = (match["text"].strip(), float(match["weight"])) if match else (part, 1.0)
        if not text:
            raise ValueError(f"empty concept in {prompt!r}: every 'AND' must join two descriptions, and a weight "
                             "':w' must follow a description (e.g. \"a red circle AND a blue square:1.5\")")
        if weight == 0:
            raise ValueError(f"concept {text!r} has weight 0 in {prompt!r}; remove it or give a non-zero weight "
                             "(negative = NOT)")
        concepts.append(Concept(text, weight))
    return concepts


def format_composition(concepts: list[Concept]) -> str:
    """The prompt text of ``concepts`` (inverse of :func:`parse_composition`; weight 1 is left implicit)."""
    return " AND ".join(c.text if c.weight == 1 else f"{c.text}:{c.weight:g}" for c in concepts)


def is_composed(prompt: str) -> bool:
    """Whether ``prompt`` uses the composition syntax (``AND`` or a ``:weight``) rather than being one plain prompt."""
    concepts = parse_composition(prompt)
    return len(concepts) > 1 or concepts[0].weight != 1


def guidance_shares(concepts: list[Concept]) -> list[float]:
    """Each concept's share ``w_i / W`` of the guidance scale, with ``W`` the sum of the positive weights (of all
    weights' magnitudes when none is positive).

    The concepts to draw share the requested guidance instead of each taking all of it: the positive shares sum to
    1, so the composition's total guidance is the scale the user asked for, and a single concept is exactly
    classifier-free guidance. A negative weight steers away at the same relative strength (Liu et al., 2022, eq. 10
    with its weights summing to the guidance scale).
    """
    positive = sum(c.weight for c in concepts if c.weight > 0)
    total = positive or sum(abs(c.weight) for c in concepts)
    return [c.weight / total for c in concepts]
