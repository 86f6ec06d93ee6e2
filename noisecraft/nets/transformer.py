"""Bidirectional sequence transformer ``logits = F(tokens, t, padding_mask, class_labels, cond, cond_mask)``: the
default network of masked (absorbing-state) diffusion over token sequences (text, SMILES / SELFIES molecules).

Architecture after MDLM's DiT backbone (Sahoo et al. 2024, "Simple and Effective Masked Diffusion Language Models",
Sec. 4 / Appendix; itself the DiT of Peebles & Xie 2023 applied to tokens):

* token embedding with ``vocab_size + 1`` rows: the last row is the absorbing ``mask_id = vocab_size``; the head
  predicts only the ``vocab_size`` real tokens (MDLM's SUBS "zero masking": the mask is never predicted);
* rotary position embeddings on queries and keys (RoPE, Su et al. 2021, "RoFormer", Eq. 34): the query / key pair
  (x_{2i}, x_{2i+1}) at position m is rotated by the angle m * theta_i, theta_i = 10000^(-2i / head_dim), so that
  q_m . k_n depends on m - n only;
* pre-norm blocks ``x + Attn(LN(x))``, ``x + MLP(LN(x))`` with bidirectional multi-head attention through
  ``torch.nn.functional.scaled_dot_product_attention``; the padding mask masks the keys, so real positions never
  attend to padding;
* conditioning vector ``c`` = MLP(sinusoids(1000 t)) (when ``time_conditioning == "adaln"``) + E[class label]
  (``num_classes > 0``; row ``num_classes`` = "no label") + MLP(cond) or a learned "no condition" vector
  (``cond_dim > 0``; used where ``cond_mask`` is False). When a ``c`` exists, every block and the final norm use
  adaLN-zero modulation (DiT, Peebles & Xie 2023, Sec. 3.2): ``LN(x) * (1 + scale) + shift`` and a gate on each
  residual branch, all from ``Linear(SiLU(c))`` initialised to zero, so every block starts as the identity;
* final LayerNorm and a zero-initialised linear head: the network starts at uniform logits.

MDLM (Sahoo et al. 2024, Sec. 3.5 / Table 9) shows that the denoiser need not see t: with ``time_conditioning =
"none"`` the logits depend only on the partially masked tokens (and the conditions), which is what makes MDLM's
sampler caching exact (:mod:`noisecraft.sequence.sampling`). :attr:`SequenceTransformer.time_independent` says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from noisecraft.jsonconfig import from_dict

from .embeddings import PositionalEmbedding
from .layers import zero_init

TIME_CONDITIONINGS = ("adaln", "none")
TIME_SCALE = 1000.0  # t in [0, 1] is embedded as the sinusoids of 1000 t (DDPM-like timestep range)
ROPE_BASE = 10_000.0


def _require_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"SequenceTransformerConfig.{name} must be an integer >= {minimum}, got {value!r}")


@dataclass
class SequenceTransformerConfig:
    """Everything needed to rebuild a :class:`SequenceTransformer`; JSON-able via :meth:`to_dict` / :meth:`from_dict`.

    ``vocab_size``: the number of logits = real tokens including specials (pad, eos, ...) but WITHOUT the mask; the
    input embedding has ``vocab_size + 1`` rows, the last being ``mask_id = vocab_size``. ``max_length``: the longest
    sequence accepted. ``time_conditioning``: "adaln" (t modulates every block) or "none" (t is ignored; MDLM shows
    both train well, and only "none" allows exact sampler caching). ``num_classes`` > 0 adds a class table of
    ``num_classes + 1`` rows, row ``num_classes`` = "no label" (classifier-free guidance, Ho & Salimans 2022).
    ``cond_dim`` > 0 adds a continuous condition ``cond [B, cond_dim]`` (e.g. normalised molecule properties)
    embedded by an MLP, with a learned "no condition" vector where ``cond_mask`` is False.
    """

    vocab_size: int
    max_length: int = 512
    dim: int = 256
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4
    time_conditioning: str = "adaln"
    num_classes: int = 0
    cond_dim: int = 0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def mask_id(self) -> int:
        """The absorbing mask token: the extra, last embedding row."""
        return self.vocab_size

    @property
    def conditioned(self) -> bool:
        """Whether the blocks are modulated by a conditioning vector (t, class label or continuous condition)."""
        return self.time_conditioning == "adaln" or self.num_classes > 0 or self.cond_dim > 0

    def validate(self) -> None:
        for name in ("vocab_size", "max_length", "dim", "depth", "heads"):
            _require_int(name, getattr(self, name), minimum=1)
        for name in ("num_classes", "cond_dim"):
            _require_int(name, getattr(self, name), minimum=0)
        if self.dim % self.heads != 0:
            raise ValueError(f"SequenceTransformerConfig.dim={self.dim} is not divisible by heads={self.heads}")
        if self.head_dim % 2 != 0:
            raise ValueError(f"SequenceTransformerConfig: the head dimension dim / heads = {self.head_dim} must be "
                             "even (rotary embeddings rotate pairs of channels)")
        if isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, (int, float)) or not self.mlp_ratio > 0:
            raise ValueError(f"SequenceTransformerConfig.mlp_ratio must be a positive number, got {self.mlp_ratio!r}")
        if self.time_conditioning not in TIME_CONDITIONINGS:
            raise ValueError(f"SequenceTransformerConfig.time_conditioning must be one of {TIME_CONDITIONINGS}, "
                             f"got {self.time_conditioning!r}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"SequenceTransformerConfig.dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SequenceTransformerConfig:
        return from_dict(cls, data)


PRESETS: dict[str, dict[str, Any]] = {
    # Unit tests and seconds-long CPU runs (~0.1M parameters plus the embeddings).
    "tiny": dict(dim=64, depth=2, heads=4),
    # CPU / small-GPU training on short sequences (~3M parameters plus the embeddings).
    "small": dict(dim=256, depth=4, heads=4),
    # GPU training, MDLM / DiT-base width (~85M parameters plus the embeddings; Sahoo et al. 2024 use this size).
    "base": dict(dim=768, depth=12, heads=12),
}


def transformer_config(preset: str, **overrides: Any) -> SequenceTransformerConfig:
    """A preset from :data:`PRESETS` with keyword ``overrides``; ``vocab_size`` (and usually ``max_length``) must be
    among the overrides, since they depend on the tokenizer and the data."""
    if preset not in PRESETS:
        raise ValueError(f"unknown sequence transformer preset {preset!r}; valid presets are {sorted(PRESETS)}")
    if "vocab_size" not in overrides:
        raise ValueError("transformer_config needs vocab_size=... (the number of real tokens, without the mask)")
    return SequenceTransformerConfig.from_dict({**PRESETS[preset], **overrides})


def rotary_tables(length: int, head_dim: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin ``[length, head_dim / 2]`` of the angles m * theta_i, theta_i = 10000^(-2i / head_dim) (RoPE)."""
    inv_freq = ROPE_BASE ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    angles = torch.arange(length, dtype=torch.float32, device=device)[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each channel pair (x_{2i}, x_{2i+1}) of ``x [B, H, L, head_dim]`` by the angle at its position
    (Su et al. 2021, Eq. 34): (x1 cos - x2 sin, x1 sin + x2 cos). Computed in float32, returned in x's dtype."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    rotated = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).flatten(-2)
    return rotated.to(x.dtype)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class TransformerBlock(nn.Module):
    """Pre-norm block: x + gate1 * Attn(mod(LN(x))), then x + gate2 * MLP(mod(LN(x))); with adaLN-zero (DiT,
    Peebles & Xie 2023) shift / scale / gate come from Linear(SiLU(c)) initialised to zero, else plain pre-norm."""

    def __init__(self, config: SequenceTransformerConfig):
        super().__init__()
        dim, self.heads, self.dropout = config.dim, config.heads, config.dropout
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=not config.conditioned)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=not config.conditioned)
        hidden = int(round(dim * config.mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Dropout(config.dropout),
                                 nn.Linear(hidden, dim))
        self.modulation = zero_init(nn.Linear(dim, 6 * dim)) if config.conditioned else None
        if self.modulation is None:  # no gates: start the residual branches at zero instead
            zero_init(self.proj)
            zero_init(self.mlp[-1])

    def forward(self, x: torch.Tensor, c: torch.Tensor | None, rope: tuple[torch.Tensor, torch.Tensor],
                attn_mask: torch.Tensor | None) -> torch.Tensor:
        if self.modulation is not None:
            shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(F.silu(c)).chunk(6, dim=-1)
            h = _modulate(self.norm1(x), shift1, scale1)
        else:
            h = self.norm1(x)
        batch, length, dim = h.shape
        q, k, v = self.qkv(h).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        h = self.proj(h.transpose(1, 2).reshape(batch, length, dim))
        if self.modulation is None:
            x = x + F.dropout(h, self.dropout, self.training)
            return x + F.dropout(self.mlp(self.norm2(x)), self.dropout, self.training)
        x = x + gate1[:, None] * F.dropout(h, self.dropout, self.training)
        h = self.mlp(_modulate(self.norm2(x), shift2, scale2))
        return x + gate2[:, None] * F.dropout(h, self.dropout, self.training)


class SequenceTransformer(nn.Module):
    """Bidirectional transformer ``logits = F(tokens, t, *, padding_mask, class_labels, cond, cond_mask)``, the
    logits_fn of MDLM masked diffusion (Sahoo et al. 2024); see the module docstring."""

    def __init__(self, config: SequenceTransformerConfig):
        super().__init__()
        if not isinstance(config, SequenceTransformerConfig):
            raise TypeError("SequenceTransformer expects a SequenceTransformerConfig (see transformer_config(preset, "
                            f"vocab_size=...)), got {type(config).__name__}")
        config.validate()
        self.config = config
        dim = config.dim
        self.token_embedding = nn.Embedding(config.vocab_size + 1, dim)  # last row: the mask token
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.time_embedding = None
        if config.time_conditioning == "adaln":
            self.time_embedding = nn.Sequential(PositionalEmbedding(dim), nn.Linear(dim, dim), nn.SiLU(),
                                                nn.Linear(dim, dim))
        self.class_embedding = nn.Embedding(config.num_classes + 1, dim) if config.num_classes else None
        self.cond_embedding = None
        if config.cond_dim:
            self.cond_embedding = nn.Sequential(nn.Linear(config.cond_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
            self.null_cond = nn.Parameter(0.02 * torch.randn(dim))  # the learned "no condition" vector
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.depth))
        self.norm_out = nn.LayerNorm(dim, elementwise_affine=not config.conditioned)
        self.out_modulation = zero_init(nn.Linear(dim, 2 * dim)) if config.conditioned else None
        self.head = zero_init(nn.Linear(dim, config.vocab_size))  # uniform logits at initialisation
        cos, sin = rotary_tables(config.max_length, config.head_dim)
        self.register_buffer("rope_cos", cos, persistent=False)  # deterministic: not saved in checkpoints
        self.register_buffer("rope_sin", sin, persistent=False)

    @property
    def time_independent(self) -> bool:
        """True when the logits ignore t (``time_conditioning == "none"``): MDLM's sampler caching is then exact."""
        return self.config.time_conditioning == "none"

    def forward(
        self,
        tokens: torch.Tensor,
        t: torch.Tensor,
        *,
        padding_mask: torch.Tensor | None = None,
        class_labels: torch.Tensor | None = None,
        cond: torch.Tensor | None = None,
        cond_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``tokens`` LongTensor ``[B, L]`` in ``[0, vocab_size]`` (``vocab_size`` = mask), ``t`` ``[B]`` (or 0-d) in
        [0, 1] -> logits ``[B, L, vocab_size]`` over the real tokens.

        ``padding_mask``: bool ``[B, L]``, True = real token; padding keys are masked out of attention, so the logits
        at real positions do not depend on what padding holds (the logits at padding positions are meaningless).
        ``class_labels``: LongTensor ``[B]`` in ``[0, num_classes]``; None = "no label" (row ``num_classes``).
        ``cond``: float ``[B, cond_dim]``; ``cond_mask``: bool ``[B]``, False = "no condition" (the learned null
        vector; the values of ``cond`` there are ignored, NaN included); ``cond=None`` = no condition for all.
        No check reads a tensor value (no host synchronisation).
        """
        t = self._check_inputs(tokens, t, padding_mask, class_labels, cond, cond_mask)
        batch, length = tokens.shape
        x = self.token_embedding(tokens)
        c = self._condition(t, class_labels, cond, cond_mask, batch, x.device)
        attn_mask = None
        if padding_mask is not None:
            # keys: real tokens; an all-padding row attends everywhere (its logits are unused) instead of to nothing
            keys = padding_mask | ~padding_mask.any(dim=1, keepdim=True)
            attn_mask = keys[:, None, None, :]
        rope = (self.rope_cos[:length], self.rope_sin[:length])
        for block in self.blocks:
            x = block(x, c, rope, attn_mask)
        x = self.norm_out(x)
        if self.out_modulation is not None:
            shift, scale = self.out_modulation(F.silu(c)).chunk(2, dim=-1)
            x = _modulate(x, shift, scale)
        return self.head(x)

    def _condition(self, t, class_labels, cond, cond_mask, batch: int, device) -> torch.Tensor | None:
        """c = time embedding + class embedding + condition embedding (the parts the config has), or None."""
        parts = []
        if self.time_embedding is not None:
            parts.append(self.time_embedding(TIME_SCALE * t.float()))
        if self.class_embedding is not None:
            if class_labels is None:
                class_labels = torch.full((batch,), self.config.num_classes, dtype=torch.long, device=device)
            parts.append(self.class_embedding(class_labels.long()))
        if self.cond_embedding is not None:
            null = self.null_cond.expand(batch, -1)
            if cond is None:
                parts.append(null)
            else:
                keep = torch.ones(batch, dtype=torch.bool, device=device) if cond_mask is None else cond_mask
                cond = torch.where(keep[:, None], cond.to(null.dtype), 0.0)  # NaN-safe: dropped values never enter
                parts.append(torch.where(keep[:, None], self.cond_embedding(cond), null))
        if not parts:
            return None
        return sum(parts[1:], parts[0])

    def _check_inputs(self, tokens, t, padding_mask, class_labels, cond, cond_mask) -> torch.Tensor:
        cfg = self.config
        if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2 or tokens.is_floating_point() \
                or tokens.dtype == torch.bool:
            got = f"{tokens.dtype} {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ValueError(f"SequenceTransformer expects integer tokens of shape [B, L], got {got}")
        batch, length = tokens.shape
        if length > cfg.max_length:
            raise ValueError(f"sequence length {length} exceeds max_length={cfg.max_length} of this network")
        t = torch.as_tensor(t, device=tokens.device)
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(f"t must have shape [B]=[{batch}] (one time per sequence), got {tuple(t.shape)}")
        if padding_mask is not None and (padding_mask.dtype != torch.bool or padding_mask.shape != tokens.shape):
            raise ValueError(f"padding_mask must be a bool tensor of shape {tuple(tokens.shape)} (True = real token), "
                             f"got {padding_mask.dtype} {tuple(padding_mask.shape)}")
        if class_labels is not None:
            if not cfg.num_classes:
                raise ValueError("class_labels were given but the network has no classes; set num_classes")
            if class_labels.shape != (batch,) or class_labels.is_floating_point():
                raise ValueError(f"class_labels must be an integer tensor of shape [{batch}], "
                                 f"got {class_labels.dtype} {tuple(class_labels.shape)}")
        if cond is not None:
            if not cfg.cond_dim:
                raise ValueError("cond was given but the network takes no continuous condition; set cond_dim")
            if cond.shape != (batch, cfg.cond_dim):
                raise ValueError(f"cond must have shape [{batch}, {cfg.cond_dim}], got {tuple(cond.shape)}")
        if cond_mask is not None:
            if not cfg.cond_dim:
                raise ValueError("cond_mask was given but the network takes no continuous condition; set cond_dim")
            if cond_mask.dtype != torch.bool or cond_mask.shape != (batch,):
                raise ValueError(f"cond_mask must be a bool tensor of shape [{batch}] (False = no condition), "
                                 f"got {cond_mask.dtype} {tuple(cond_mask.shape)}")
        return t
