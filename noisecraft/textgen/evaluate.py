"""Evaluating a text model: bits per character on held-out text (an upper bound: the NELBO) and sampling speed.

The held-out documents are tokenized like the training corpus (``<eos>`` after each; a character the character
vocabulary lacks becomes ``<unk>`` and is counted), cut into non-overlapping windows of the model's length (the
tail shorter than a window is left out) and scored with ``noisecraft.sequence.likelihood.nelbo``: ``samples``
Monte Carlo draws of the masking time per window. Bits per character = bits per token x tokens / characters of the
held-out stream, each ``<eos>`` counted as one character (so for the character tokenizer bits per character equal
bits per token); for BPE that ratio converts the bound per token into one per character.

The standard error treats the windows as independent units (Monte Carlo noise and the spread between windows);
``stderr_mc_bits_per_char`` is the Monte Carlo part alone.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisecraft import __version__

from .data import DEFAULT_CORPUS, HELD_OUT_PLAYS, TokenWindows, read_corpus, shakespeare_corpus
from .tokenizers import CharTokenizer


def held_out_texts(pipeline, heldout: str | Path | None) -> tuple[list[str], str]:
    """The held-out documents and a description: ``heldout``'s, or the default corpus's held-out plays when the
    model was trained on it."""
    if heldout is not None:
        return read_corpus(heldout).texts, str(heldout)
    corpus = (pipeline.spec.extra or {}).get("corpus") or {}
    if corpus.get("corpus") != DEFAULT_CORPUS:
        raise ValueError(f"this model was trained on {corpus.get('corpus', 'an unknown corpus')!r}, not on the "
                         f"default corpus; pass held-out text: noisecraft text evaluate MODEL HELDOUT.txt")
    plays = shakespeare_corpus().held_out
    return [d.text for d in plays], f"{DEFAULT_CORPUS}: held-out plays {', '.join(HELD_OUT_PLAYS)}"


def _combine(parts: list[dict[str, Any]], window: int) -> dict[str, float]:
    """One nelbo result from those of disjoint chunks of equal-length windows (exact: the ratio estimator's
    residual sum of squares is split into within-chunk and between-chunk parts)."""
    count = sum(p["sequences"] for p in parts)
    tokens = sum(p["tokens"] for p in parts)
    rate = sum(p["bits_per_token"] * p["tokens"] for p in parts) / tokens
    residual = 0.0
    for p in parts:
        n_c = p["sequences"]
        within = p["stderr_bits_per_token"] ** 2 * p["tokens"] ** 2 * (n_c - 1) / n_c if n_c > 1 else 0.0
        residual += within + n_c * window ** 2 * (p["bits_per_token"] - rate) ** 2
    stderr = math.sqrt(count / (count - 1) * residual) / tokens if count > 1 else parts[0]["stderr_bits_per_token"]
    mc = math.sqrt(sum((p["stderr_mc_bits_per_token"] * p["tokens"]) ** 2 for p in parts)) / tokens
    return {"bits_per_token": rate, "stderr_bits_per_token": stderr, "stderr_mc_bits_per_token": mc,
            "tokens": tokens, "sequences": count}


def evaluate_model(pipeline, heldout: str | Path | None = None, *, samples: int = 4, max_windows: int | None = None,
                   batch_size: int = 32, speed_n: int = 8, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """The evaluation report of a loaded :class:`~noisecraft.textgen.pipeline.TextPipeline` (see the module
    docstring): bits per character with its standard error, and sampling tokens per second."""
    from noisecraft.sequence.likelihood import nelbo

    for name, value, low in (("samples", samples, 1), ("batch_size", batch_size, 1), ("speed_n", speed_n, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if max_windows is not None and (isinstance(max_windows, bool) or not isinstance(max_windows, int)
                                    or max_windows < 1):
        raise ValueError(f"max_windows must be a positive integer, got {max_windows!r}")
    tokenizer, length = pipeline.tokenizer, pipeline.max_length
    texts, source = held_out_texts(pipeline, heldout)
    stream = tokenizer.encode_documents(texts, strict=False)
    characters = sum(len(t) for t in texts) + len(texts)  # each <eos> counts as one character
    unknown = sum(t == tokenizer.unk_id for t in stream) if isinstance(tokenizer, CharTokenizer) else 0
    windows = TokenWindows(stream, length, stride=length, what="the held-out text")
    chosen = np.arange(len(windows))
    if max_windows is not None and max_windows < len(windows):
        chosen = np.unique(np.linspace(0, len(windows) - 1, max_windows).round().astype(int))
    tokens = windows.collate(chosen.tolist())["tokens"]

    generator = torch.Generator(device=pipeline.device).manual_seed(seed)
    parts = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tokens), desc="scoring held-out windows", unit="window", leave=False)
    for start in range(0, len(tokens), batch_size):
        chunk = tokens[start:start + batch_size]
        parts.append(nelbo(pipeline.model, chunk, num_samples=samples, generator=generator, batch_size=batch_size))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    result = _combine(parts, length)
    chars_per_token = characters / len(stream)

    def per_char(bits: float) -> float | None:  # None (JSON null) where undefined, e.g. the MC error of 1 sample
        return bits / chars_per_token if math.isfinite(bits) else None

    report: dict[str, Any] = {
        "model": pipeline.source, "heldout": source, "tokenizer": tokenizer.kind, "window": length,
        "windows": int(len(tokens)), "windows_available": len(windows), "tokens": result["tokens"],
        "characters_per_token": chars_per_token,
        "bits_per_token": result["bits_per_token"],
        "bits_per_char": per_char(result["bits_per_token"]),
        "stderr_bits_per_char": per_char(result["stderr_bits_per_token"]),
        "stderr_mc_bits_per_char": per_char(result["stderr_mc_bits_per_token"]),
        "mc_samples": samples, "unknown_characters": int(unknown), "seed": seed, "noisecraft": __version__,
    }
    if speed_n:
        steps = min(length, 4096)
        start_time = time.perf_counter()
        pipeline.generate({"n": speed_n, "length": length, "steps": steps}, seed=seed)
        seconds = time.perf_counter() - start_time
        report["sampling"] = {"tokens_per_second": speed_n * length / seconds, "n": speed_n, "length": length,
                              "steps": steps, "seconds": round(seconds, 3), "device": str(pipeline.device)}
    return report


def score_model(model_dir: Path, data: str, *, limit: int | None = 256, batch_size: int = 32, seed: int = 0,
                device: str = "auto", samples: int = 4) -> dict[str, Any]:
    """The ``noisecraft likelihood`` report of a text model (the registry's ``likelihood`` entry of text):
    :func:`evaluate_model` without the speed part, on ``data`` (held-out text; ``default``: the held-out plays of
    the default corpus), at most ``limit`` windows."""
    from .pipeline import TextPipeline

    pipeline = TextPipeline.load(model_dir, device=device)
    report = evaluate_model(pipeline, None if data == "default" else data, samples=samples, max_windows=limit,
                            batch_size=batch_size, speed_n=0, seed=seed)
    return {"kind": "text", **report,
            "measure": "masked-diffusion NELBO (MDLM, an upper bound on -log2 p), bits per token and per character"}
