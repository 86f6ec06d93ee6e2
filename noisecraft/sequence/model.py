"""The shared sequence model: a network of :mod:`noisecraft.nets.registry` as the SUBS denoiser of MDLM masked
diffusion (Sahoo et al. 2024, "Simple and Effective Masked Diffusion Language Models"), and its training loss.

Modalities on top (text, SMILES / SELFIES molecules) only map their data to token ids and conditions; the spec,
the network, the loss, the sampler (:mod:`.sampling`) and the likelihood (:mod:`.likelihood`) live here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn

from noisecraft.diffusion.guidance import drop_condition
from noisecraft.diffusion.masked import SCHEDULE_NAMES, MaskSchedule, masked_diffusion_loss
from noisecraft.jsonconfig import from_dict
from noisecraft.nets.registry import build_network, network_config

CONDITION_KEYS = ("class_labels", "cond", "cond_mask")  # what classifier-free guidance drops / replaces


@dataclass(kw_only=True)
class SequenceModelSpec:
    """Everything needed to rebuild a sequence model; stored as ``model_config`` in ``config.json``.

    ``kind``: the modality ("text", "molecules"; dispatch of ``noisecraft.load``). ``network`` / ``net``: a network
    of :mod:`noisecraft.nets.registry` and its config dict. ``vocab_size``: real tokens incl. specials, without the
    mask; ``mask_id`` = ``vocab_size`` (the absorbing token, the network's extra embedding row; None = filled in).
    ``pad_id`` / ``eos_id``: the tokenizer's specials, if any (real tokens: the model predicts them).
    ``max_length``: the longest sequence trained / generated. ``mask_schedule``: alpha(t) of
    :class:`~noisecraft.diffusion.masked.MaskSchedule` ("loglinear" is MDLM's). ``cond_drop_prob``: the condition
    dropout of classifier-free guidance training. ``extra``: the modality's own data (tokenizer path, property
    normalisation, ...), stored untouched.
    """

    kind: str
    network: str = "sequence_transformer"
    net: dict
    vocab_size: int
    mask_id: int | None = None
    pad_id: int | None = None
    eos_id: int | None = None
    max_length: int
    mask_schedule: str = "loglinear"
    cond_drop_prob: float = 0.1
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise ValueError(f"sequence model kind must be a non-empty string, got {self.kind!r}")
        for name in ("vocab_size", "max_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"sequence model {name} must be a positive integer, got {value!r}")
        if self.mask_id is None:
            self.mask_id = self.vocab_size
        if self.mask_id != self.vocab_size:
            raise ValueError(f"mask_id must be vocab_size={self.vocab_size} (the network's extra embedding row), "
                             f"got {self.mask_id!r}")
        for name in ("pad_id", "eos_id"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 0 <= value < self.vocab_size):
                raise ValueError(f"{name} must be a token id in [0, {self.vocab_size}) or None, got {value!r}")
        if self.mask_schedule not in SCHEDULE_NAMES:
            raise ValueError(f"unknown mask_schedule {self.mask_schedule!r}; choose one of {list(SCHEDULE_NAMES)}")
        if isinstance(self.cond_drop_prob, bool) or not isinstance(self.cond_drop_prob, (int, float)) \
                or not 0 <= self.cond_drop_prob <= 1:
            raise ValueError(f"cond_drop_prob must be in [0, 1], got {self.cond_drop_prob!r}")
        if not isinstance(self.net, dict) or not isinstance(self.extra, dict):
            raise TypeError("sequence model net and extra must be dicts")
        if "vocab_size" in self.net and self.net["vocab_size"] != self.vocab_size:
            raise ValueError(f"net.vocab_size={self.net['vocab_size']} disagrees with vocab_size={self.vocab_size}")
        if "max_length" in self.net and self.net["max_length"] < self.max_length:
            raise ValueError(f"net.max_length={self.net['max_length']} is shorter than max_length={self.max_length}")

    @property
    def num_classes(self) -> int:
        """Class labels the network takes (0 = none); label ``num_classes`` is "no label"."""
        return int(self.net.get("num_classes", 0))

    @property
    def cond_dim(self) -> int:
        """Size of the continuous condition vector (0 = none)."""
        return int(self.net.get("cond_dim", 0))

    @property
    def schedule(self) -> MaskSchedule:
        return MaskSchedule(self.mask_schedule)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, kind: str | None = None) -> SequenceModelSpec:
        """The spec of ``data`` (as written by :meth:`to_dict`); ``kind``, when given, must match."""
        spec = from_dict(cls, data, name="sequence model")
        if kind is not None and spec.kind != kind:
            raise ValueError(f"this is a {spec.kind!r} model, not a {kind!r} model")
        return spec


def make_sequence_spec(kind: str, *, vocab_size: int, max_length: int, preset: str = "tiny",
                       network: str = "sequence_transformer", net: dict | None = None,
                       **fields: Any) -> SequenceModelSpec:
    """A spec whose network config is ``preset`` with ``net`` overrides and ``vocab_size`` / ``max_length`` forced
    to agree with the spec (``fields``: the other :class:`SequenceModelSpec` fields)."""
    net_dict = network_config(network, preset, **{**(net or {}), "vocab_size": vocab_size, "max_length": max_length})
    return SequenceModelSpec(kind=kind, network=network, net=net_dict, vocab_size=vocab_size, max_length=max_length,
                             **fields)


class SequenceDiffusionModel(nn.Module):
    """The trainable SUBS denoiser of MDLM (Sahoo et al. 2024, Sec. 3.2): ``logits(x_t, t, **cond) -> [B, L, V]``,
    the ``logits_fn`` of :func:`~noisecraft.diffusion.masked.masked_diffusion_loss` and ``sample_masked``;
    p_theta(x0^l | x_t) = softmax(logits[:, l]) over the V = ``vocab_size`` real tokens (the mask has no logit:
    "zero masking"; "carry-over unmasking" is applied by the engine).

    ``cond`` keywords are those of the network: ``padding_mask``, ``class_labels``, ``cond``, ``cond_mask`` for the
    sequence transformer. ``net`` replaces the registry-built network (any module with that call signature, e.g.
    an exact denoiser in tests); a network that ignores t says so by ``time_independent = True``.
    """

    def __init__(self, spec: SequenceModelSpec, net: nn.Module | None = None):
        super().__init__()
        self.spec = spec
        self.net = build_network(spec.network, spec.net) if net is None else net

    @property
    def time_independent(self) -> bool:
        """Whether the logits ignore t (then MDLM's sampler caching is exact; see :mod:`.sampling`)."""
        return bool(getattr(self.net, "time_independent", False))

    def logits(self, x_t: Tensor, t: Tensor, **cond: Tensor) -> Tensor:
        """``x_t`` LongTensor ``[B, L]`` (``mask_id`` where masked), ``t`` ``[B]`` -> logits ``[B, L, vocab_size]``."""
        return self.net(x_t, t, **cond)

    forward = logits


def make_loss_fn(spec: SequenceModelSpec, *, loss_on_padding: bool = True) -> Callable:
    """``loss_fn(model, batch, generator) -> [B]`` for the shared :class:`~noisecraft.training.Trainer`.

    The per-example loss is MDLM's continuous-time NELBO (Sahoo et al. 2024, Eq. 10-11, SUBS parameterization)

        L(x0) = E_{t ~ U[t_min, 1]} E_{q(x_t | x0)} [ -alpha'(t) / (1 - alpha(t)) * sum_{l: x_t^l = mask}
                -log p_theta(x0^l | x_t) ]

    in nats, SUMMED over positions (one Monte Carlo draw of t, low-discrepancy over the batch, and of the mask);
    the trainer averages it over the batch, i.e. it minimises the mean NELBO per sequence. Divide by the token
    count for nats per token (:func:`noisecraft.sequence.likelihood.nelbo` does).

    ``batch``: {"tokens": LongTensor [B, L], optional "padding_mask": bool [B, L] (True = real), "class_labels":
    [B], "cond": [B, cond_dim], "cond_mask": bool [B]}. Padding: with ``loss_on_padding`` (default, MDLM's text
    setup) pad tokens are data: they are masked and predicted like any token (the model learns where sequences
    end) and the network attends to every position, so "padding_mask" is ignored. With ``loss_on_padding=False``
    padding costs nothing (``weight_mask``) and is hidden from attention (the network gets ``padding_mask``); such
    a model needs the padding mask at sampling time too.

    Classifier-free guidance training (Ho & Salimans 2022, Alg. 1): with probability ``spec.cond_drop_prob`` an
    example's conditions are all dropped together (one draw per example, as
    :func:`~noisecraft.diffusion.guidance.drop_condition` does): its class label becomes "no label"
    (``num_classes``) and its ``cond_mask`` False (the network's learned "no condition" vector). The loss calls
    ``masked_diffusion_loss(..., validate=False)``: no host synchronisation in a training step. ``model`` is called
    as ``model(x_t, t, **cond)`` (its forward, so DDP and torch.compile wrappers work).
    """
    schedule = spec.schedule
    mask_id = spec.mask_id
    null_label = spec.num_classes

    def loss_fn(model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator | None) -> Tensor:
        tokens = batch["tokens"].long()
        cond: dict[str, Tensor] = {}
        weight_mask = None
        if not loss_on_padding and batch.get("padding_mask") is not None:
            padding_mask = batch["padding_mask"].bool()
            cond["padding_mask"] = padding_mask
            weight_mask = padding_mask.to(torch.float32)
        conditions: dict[str, Tensor] = {}
        nulls: dict[str, Tensor] = {}
        if batch.get("class_labels") is not None:
            conditions["class_labels"] = batch["class_labels"].long()
            nulls["class_labels"] = torch.tensor(null_label, device=tokens.device)
        if batch.get("cond") is not None:
            cond["cond"] = batch["cond"].float()
            cond_mask = batch.get("cond_mask")
            if cond_mask is None:
                cond_mask = torch.ones(tokens.shape[0], dtype=torch.bool, device=tokens.device)
            conditions["cond_mask"] = cond_mask.bool()
            nulls["cond_mask"] = torch.tensor(False, device=tokens.device)
        if conditions and spec.cond_drop_prob > 0:
            conditions = drop_condition(conditions, nulls, spec.cond_drop_prob, generator)
        cond.update(conditions)
        return masked_diffusion_loss(model, tokens, schedule=schedule, mask_id=mask_id, generator=generator,
                                     weight_mask=weight_mask, validate=False, **cond)

    return loss_fn
