"""Does a text encoder tell each colour word which shape it belongs to?

Attribute binding needs it: in "a red circle above a green square" the U-Net's cross-attention can only draw the
circle red if the token of "red" (or of "circle") carries the pairing. For every two-object benchmark prompt this
encodes the prompt and its variant with the two shape words swapped ("a red square above a green circle") and
reports how far each colour token moves, relative to how far it moves when the colour word itself is replaced:
0 means the colour token is the same whatever shape follows it (a bag of words, binding left to the U-Net);
larger means the encoder puts the pairing into the token.

    python benchmarks/shapes/text_context.py                       # the shipped model's learned encoder
    python benchmarks/shapes/text_context.py --model runs/mine     # any text-to-image model folder
    python benchmarks/shapes/text_context.py --minilm              # the frozen MiniLM encoder
"""

from __future__ import annotations

import argparse
import json
import re

import torch

from noisecraft.shapes.benchmark import benchmark_prompts
from noisecraft.shapes.world import COLOURS, SHAPES

TWO_OBJECT_CATEGORIES = ("attribute_binding", "position")


def swap_shapes(prompt: str) -> str | None:
    """The prompt with its two (singular) shape words swapped, or None unless it names exactly two different ones."""
    found = [w for w in re.findall(r"[a-z]+", prompt) if w in SHAPES]
    if len(found) != 2 or found[0] == found[1]:
        return None
    first, second = found
    return re.sub(rf"\b({first}|{second})\b", lambda m: second if m.group(1) == first else first, prompt)


def token_ids(encoder, prompt: str) -> list[int]:
    if hasattr(encoder, "token_ids"):  # learned word-level encoder
        return encoder.token_ids(prompt)
    return encoder.tokenizer(prompt)["input_ids"]  # MiniLM WordPiece


def _replace_word(prompt: str, index: int, word: str) -> str:
    words = prompt.split()
    return " ".join(words[:index] + [word] + words[index + 1:])


@torch.no_grad()
def colour_token_context(encoder, prompts: list[str]) -> dict:
    """How far each colour token moves when the shapes are swapped, relative to how far it moves when the colour
    word itself is replaced: ``|t(red | circle) - t(red | square)| / |t(red | circle) - t(blue | circle)|``.

    0 means a bag of words (the token ignores its shape); the raw cosine would hide this, as the tokens of
    pre-trained encoders share a large common direction. Only single-token words are compared."""
    ratios = []
    for prompt in prompts:
        variant = swap_shapes(prompt)
        if variant is None:
            continue
        ids, variant_ids = token_ids(encoder, prompt), token_ids(encoder, variant)
        for index, word in enumerate(prompt.split()):
            if word not in COLOURS:
                continue
            other = next(c for c in COLOURS if c not in prompt.split())
            replaced = _replace_word(prompt, index, other)
            replaced_ids = token_ids(encoder, replaced)
            changed = [i for i, (a, b) in enumerate(zip(ids, replaced_ids)) if a != b]
            if len({len(ids), len(variant_ids), len(replaced_ids)}) != 1 or len(changed) != 1:
                continue  # a word of several tokens: positions do not line up
            position = changed[0]
            tokens, _, _ = encoder.encode([prompt, variant, replaced])
            own, swapped, recoloured = tokens[:, position]
            ratios.append(float((own - swapped).norm() / (own - recoloured).norm()))
    if not ratios:
        raise ValueError("no prompt pair to compare: the prompts need two different shapes and colour words")
    return {"mean": sum(ratios) / len(ratios), "max": max(ratios), "tokens": len(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="text-to-image model folder (default: the shipped one)")
    source.add_argument("--minilm", action="store_true", help="measure the frozen MiniLM encoder instead")
    args = parser.parse_args()
    if args.minilm:
        from noisecraft.text.encoders import MiniLMEncoder

        encoder, name = MiniLMEncoder(), "minilm"
    else:
        from noisecraft.images.cli_text import load_text_model
        from noisecraft.text.encoders import shared_text_encoder

        pipeline = load_text_model(args.model)
        model = pipeline.model
        encoder = model.text_encoder or shared_text_encoder(model.spec.text_encoder)
        name = pipeline.source
    prompts = [p.text for p in benchmark_prompts() if p.category in TWO_OBJECT_CATEGORIES]
    print(json.dumps({"encoder": name, "colour_token_context": colour_token_context(encoder, prompts)}))


if __name__ == "__main__":
    main()
