"""The joint denoiser network for tables: one residual MLP over all columns.

TabDDPM (Kotelnikov et al. 2023, Sec. 4) and TabSyn (Zhang et al. 2024, Sec. 3.3) use an MLP over the concatenated
columns with a time embedding added; TabDiff (Shi et al. 2025, Sec. 3.3) feeds numeric values and categorical
tokens to one network that predicts both. Here:

    h_0 = Linear([c_in * x_num, given_num * x_num_given, given_num, Embed(tokens)])
    h_l = h_{l-1} + W_2 Dropout(SiLU(W_1 (LayerNorm(h_{l-1}) * (1 + s_l) + b_l)))      s_l, b_l = Linear(e)
    F   = Linear_num(LayerNorm(h_L)),   logits = Linear_cat(LayerNorm(h_L))

with e = MLP(PositionalEmbedding(c_noise)) the noise-level embedding (adaptive LayerNorm as in DiT, Peebles & Xie
2023, Sec. 3.2). Columns given as conditions enter unscaled through ``x_num_given`` because the EDM input scaling
c_in(sigma) would otherwise hide them at high noise.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from noisecraft.nets.embeddings import PositionalEmbedding


class ResidualBlock(nn.Module):
    """Pre-norm residual MLP block with noise-conditioned scale and shift; the last layer starts at zero."""

    def __init__(self, width: int, *, expansion: int = 2, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.scale_shift = nn.Linear(width, 2 * width)
        self.hidden = nn.Linear(width, expansion * width)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(expansion * width, width)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        """``emb`` is ``[B, width]``, or ``[1, width]`` shared by every row (broadcast)."""
        scale, shift = self.scale_shift(emb).chunk(2, dim=1)
        update = self.hidden(self.norm(h) * (1 + scale) + shift)
        return h + self.output(self.dropout(nn.functional.silu(update)))


class TabularNet(nn.Module):
    """Raw network ``net(x_in, c_noise, *, tokens, given, x_given) -> (F [B, D_num], logits [B, D_cat, V])``.

    ``tokens`` ``[B, D_cat]`` hold token ids with ``mask_id = max(category_sizes)`` for masked entries; ``logits``
    are padded to a shared vocabulary of ``V = mask_id + 1`` ids, with -inf on ids a column does not have and on
    the mask id itself (the model never predicts "masked", MDLM's SUBS parameterisation, Sahoo et al. 2024, Sec. 3.2).

    ``logits="flat"`` returns them unpadded instead, ``[B, sum(category_sizes)]`` (column j's at
    ``flat_offsets[j] : flat_offsets[j] + size_j``): the sampler's layout, which never writes or reads the
    ``D_cat * V - sum(sizes)`` padded entries (with one 200-level column among 2-level ones, 12x fewer).
    ``logits=None`` skips the categorical head (the sampler's second Heun call, whose logits are unused).
    In eval mode, when every row has the same noise level (sampling), the noise embedding and the blocks'
    scale/shift are computed once and broadcast: the same function, a third fewer multiply-adds per row.
    """

    def __init__(
        self,
        num_numeric: int,
        category_sizes: list[int],
        *,
        width: int = 256,
        depth: int = 3,
        token_dim: int = 16,
        noise_channels: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        if num_numeric == 0 and not category_sizes:
            raise ValueError("TabularNet needs at least one numeric or categorical column")
        self.num_numeric = num_numeric
        self.category_sizes = list(category_sizes)
        self.mask_id = max(self.category_sizes, default=1)
        sizes = torch.tensor(self.category_sizes, dtype=torch.long)
        # Column j's tokens live at offsets[j] .. offsets[j] + size_j - 1 and its mask at offsets[j] + size_j.
        self.register_buffer("sizes", sizes, persistent=False)
        self.register_buffer("offsets", torch.cumsum(sizes + 1, 0) - (sizes + 1), persistent=False)
        self.token_embedding = nn.Embedding(int((sizes + 1).sum()), token_dim) if category_sizes else None
        input_dim = 3 * num_numeric + token_dim * len(category_sizes)
        self.input = nn.Linear(input_dim, width)
        self.noise_embedding = PositionalEmbedding(noise_channels)
        self.noise_mlp = nn.Sequential(nn.Linear(noise_channels, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU())
        self.blocks = nn.ModuleList(ResidualBlock(width, dropout=dropout) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width)
        self.numeric_head = nn.Linear(width, num_numeric)
        self.category_head = nn.Linear(width, int(sizes.sum())) if category_sizes else None
        # Where each column's logits go in the padded [D_cat, V] grid; everything else stays -inf.
        column = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
        token = torch.cat([torch.arange(int(size)) for size in sizes]) if category_sizes else torch.zeros(0)
        self.register_buffer("logit_slot", (column * (self.mask_id + 1) + token).long(), persistent=False)
        self.flat_offsets = [0, *torch.cumsum(sizes, 0).tolist()][:-1] if category_sizes else []

    def column_groups(self) -> list[tuple[int, list[int]]]:
        """Categorical columns grouped by vocabulary size: ``[(size, [column, ...]), ...]`` (drawn together)."""
        groups: dict[int, list[int]] = {}
        for column, size in enumerate(self.category_sizes):
            groups.setdefault(size, []).append(column)
        return sorted(groups.items())

    def flat_index(self, columns: list[int], size: int) -> Tensor:
        """Flat-logit indices ``[len(columns) * size]`` of ``columns`` (all of vocabulary ``size``), row-major."""
        starts = torch.tensor([self.flat_offsets[column] for column in columns], dtype=torch.long)
        return (starts[:, None] + torch.arange(size)).reshape(-1).to(self.sizes.device)

    def _noise(self, c_noise: Tensor) -> tuple[Tensor, bool]:
        """The noise embedding, once for the batch when every row shares c_noise (eval only); (emb, shared)."""
        shared = not self.training and c_noise.numel() > 1 and bool((c_noise == c_noise[0]).all())
        emb = self.noise_mlp(self.noise_embedding(c_noise[:1] if shared else c_noise))
        return emb, shared

    def forward(self, x_in: Tensor, c_noise: Tensor, *, tokens: Tensor, given: Tensor, x_given: Tensor,
                logits: str | None = "padded"):
        if logits not in ("padded", "flat", None):
            raise ValueError(f"logits must be 'padded', 'flat' or None; got {logits!r}")
        batch = x_in.shape[0]
        features = [x_in, given * x_given, given]
        if self.token_embedding is not None:
            is_mask = tokens == self.mask_id
            index = self.offsets + torch.where(is_mask, self.sizes, tokens)
            features.append(self.token_embedding(index).flatten(1))
        h = self.input(torch.cat(features, dim=1))
        emb, _ = self._noise(c_noise)
        for block in self.blocks:
            h = block(h, emb)
        h = self.out_norm(h)
        F = self.numeric_head(h)
        if logits is None:
            return F, None
        flat = self.category_head(h) if self.category_head is not None else h.new_zeros(batch, 0)
        if logits == "flat":
            return F, flat
        padded = h.new_full((batch, len(self.category_sizes) * (self.mask_id + 1)), float("-inf"))
        padded[:, self.logit_slot] = flat
        return F, padded.view(batch, len(self.category_sizes), self.mask_id + 1)
