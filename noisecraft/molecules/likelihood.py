"""The masked-diffusion NELBO of a molecule model on a set of molecules: the ``noisecraft likelihood`` entry of the
molecules modality (dispatched through the registry).

Each molecule is canonicalised, tokenized and padded exactly as in training (tokens, ``<eos>``, ``<pad>`` up to the
model's length; padding is data, so every position is scored) and scored unconditionally (the network's learned
"no condition" vector) by :func:`noisecraft.sequence.likelihood.nelbo`. Bits per molecule = bits per position x
length: an upper bound on -log2 p(molecule's token string) under the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from noisecraft import __version__


def score_model(model_dir: Path, data: str, *, limit: int | None = 256, batch_size: int = 64, seed: int = 0,
                device: str = "auto", samples: int = 4) -> dict[str, Any]:
    """NELBO report of the first ``limit`` valid molecules of ``data`` (a SMILES or CSV file, or a MOSES split
    name such as ``moses-test:1000``) under the molecule model in ``model_dir``; ``samples`` Monte Carlo draws of
    the masking time per molecule, from ``seed``."""
    from noisecraft.sequence.likelihood import nelbo

    from .data import read_molecules
    from .pipeline import MoleculePipeline
    from .training import encode_all, pad_rows

    pipeline = MoleculePipeline.load(model_dir, device=device)
    molecules = read_molecules(data, limit=limit)
    tokenizer, length = pipeline.tokenizer, int(pipeline.spec.max_length)
    smiles = molecules.smiles[:limit] if limit else molecules.smiles  # MOSES names ignore read_molecules' limit
    rows, _, dropped = encode_all(tokenizer, smiles, length)
    if not rows:
        raise ValueError(f"none of the {len(smiles)} molecules of {data} fits this model (at most "
                         f"{length - 1} tokens of its vocabulary); give molecules like its training set")
    tokens = pad_rows(rows, length, tokenizer.eos_id, tokenizer.pad_id)
    generator = torch.Generator(device=pipeline.device).manual_seed(seed)
    result = nelbo(pipeline.model, tokens, num_samples=samples, generator=generator, batch_size=batch_size)
    return {
        "model": str(model_dir), "kind": "molecules", "data": str(data), "molecules": len(rows),
        "left_out": {"invalid_smiles": len(molecules.skipped), "too_long_or_unknown_tokens": dropped},
        "length": length, "representation": tokenizer.representation,
        "bits_per_token": result["bits_per_token"], "stderr_bits_per_token": result["stderr_bits_per_token"],
        "bits_per_molecule": result["bits_per_token"] * length,
        "stderr_bits_per_molecule": result["stderr_bits_per_token"] * length,
        "mc_samples": samples, "seed": seed, "batch_size": batch_size, "noisecraft": __version__,
        "measure": "masked-diffusion NELBO (MDLM, an upper bound on -log2 p), unconditional; bits per token over "
                   "all positions (padding is data, as in training) and per molecule (x length)",
    }
