"""Scaffold decoration by infill: a SMILES scaffold with attachment points ``*`` (e.g. ``c1ccc(*)cc1C(=O)N*``),
each replaced by a run of masked tokens that the masked-diffusion model fills in, everything else kept.

A template is the scaffold's tokens with ``m_j`` masks at attachment point j, then ``<eos>`` and padding to the
model's length: the molecule's length is fixed by the template, so each sample draws its own sizes ``m_j`` uniformly
in ``1..max_size`` (``max_size`` = ``decoration_size``, lowered so the template fits) and the samples sharing a size
vector are drawn together (``generate_tokens(template=...)``). The kept tokens never change (SUBS carry-over); what
can fail is chemistry: a filled-in run that makes the whole string invalid, so the success rate (valid molecules
containing the scaffold's core) is measured and reported. SMILES models only (a SELFIES string has no local
attachment point).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .tokenizers import MoleculeTokenizer, TokenizeError, split_smiles

ATTACH = "*"


@dataclass
class ScaffoldPlan:
    segments: list[list[int]]  # token ids between attachment points (len = points + 1)
    max_size: int  # masks per attachment point at most
    core: Any  # RDKit query: the scaffold without its dummy atoms


def plan_scaffold(scaffold: str, tokenizer: MoleculeTokenizer, max_length: int, decoration_size: int) -> ScaffoldPlan:
    """Checked scaffold -> token segments and core; ValueError naming the problem."""
    from rdkit import Chem

    from .data import quiet_rdkit

    if tokenizer.representation != "smiles":
        raise ValueError(f"scaffold decoration needs a SMILES model; this one is {tokenizer.representation}")
    quiet_rdkit()
    mol = Chem.MolFromSmiles(scaffold)
    if mol is None:
        raise ValueError(f"scaffold {scaffold!r} is not a valid SMILES (mark attachment points with *, e.g. "
                         f"c1ccc(*)cc1)")
    try:
        tokens = split_smiles(scaffold)
    except TokenizeError as error:
        raise ValueError(str(error)) from None
    points = tokens.count(ATTACH)
    if points == 0:
        raise ValueError(f"scaffold {scaffold!r} has no attachment point: mark one with *, e.g. c1ccc(*)cc1")
    segments, current = [], []
    for token in tokens:
        if token == ATTACH:
            segments.append(current)
            current = []
        elif token not in tokenizer.index:
            raise ValueError(f"scaffold {scaffold!r} holds the symbol {token!r}, unknown to this model's vocabulary")
        else:
            current.append(tokenizer.index[token])
    segments.append(current)
    room = max_length - 1 - (len(tokens) - points)  # positions left for decorations before <eos>
    max_size = min(decoration_size, room // points)
    if max_size < 1:
        raise ValueError(f"scaffold {scaffold!r} leaves no room for decorations in this model's {max_length} "
                         f"tokens")
    core = Chem.DeleteSubstructs(mol, Chem.MolFromSmarts("[#0]"))
    return ScaffoldPlan(segments, max_size, core)


def template(plan: ScaffoldPlan, sizes: tuple[int, ...], length: int, mask_id: int, eos_id: int,
             pad_id: int) -> torch.Tensor:
    ids: list[int] = []
    for segment, size in zip(plan.segments, sizes):
        ids += segment + [mask_id] * size
    ids += plan.segments[-1] + [eos_id]
    return torch.tensor(ids + [pad_id] * (length - len(ids)), dtype=torch.long)


class BannedTokens(torch.nn.Module):
    """The diffusion model with ``<eos>`` and ``<pad>`` made (almost) impossible at ``positions``: everywhere for a
    decoration template (every masked position lies inside the molecule, and an end token would cut it short), at
    the first position for free sampling (the empty string is no molecule and never a training example). A large
    negative logit rather than -inf keeps classifier-free guidance's log-probability differences finite."""

    def __init__(self, model: torch.nn.Module, banned: list[int], positions: slice = slice(None)):
        super().__init__()
        self.inner, self.spec, self.banned, self.positions = model, model.spec, banned, positions
        self.time_independent = bool(getattr(model, "time_independent", False))

    def logits(self, x: torch.Tensor, t: torch.Tensor, **kwargs) -> torch.Tensor:
        out = self.inner.logits(x, t, **kwargs).clone()
        out[:, self.positions, self.banned] = -1e9
        return out


def decorate(generate, plan: ScaffoldPlan, n: int, length: int, seed: int, ids: dict[str, int]) -> torch.Tensor:
    """``[n, length]`` tokens: ``generate(count, template, seed)`` per group of samples sharing their sizes."""
    rng = np.random.default_rng(seed)
    sizes = [tuple(int(s) for s in row) for row in rng.integers(1, plan.max_size + 1,
                                                                size=(n, len(plan.segments) - 1))]
    out = torch.empty(n, length, dtype=torch.long)
    for group, key in enumerate(sorted(set(sizes))):
        rows = [i for i, s in enumerate(sizes) if s == key]
        tokens = generate(len(rows), template(plan, key, length, ids["mask"], ids["eos"], ids["pad"]),
                          (seed * 7919 + group) % 2**63)
        out[rows] = tokens.cpu()
    return out
