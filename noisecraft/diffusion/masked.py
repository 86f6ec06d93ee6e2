"""Masked (absorbing-state) discrete diffusion in continuous time: MDLM (Sahoo et al. 2024, "Simple and effective
masked diffusion language models").

Tokens are integer tensors `[B, ...]` over a vocabulary {0, ..., V-1} plus one absorbing `mask_id` (usually V).
Forward process: each token independently stays itself with probability alpha(t) and becomes `mask_id` otherwise,
alpha(0) = 1, alpha(1) ~ 0. A model `logits_fn(x_t, t) -> [B, ..., V]` predicts x0 at every position; with the SUBS
parameterization of MDLM it never predicts the mask ("zero masking": the mask logit, if present, is
dropped) and unmasked tokens are carried over unchanged ("carry-over unmasking"), so only masked positions are
scored and re-sampled. Shared by the text, molecule and tabular-categorical modalities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from noisecraft.diffusion.loss import draw
from noisecraft.diffusion.precond import append_dims

LogitsFn = Callable[[Tensor, Tensor], Tensor]

SCHEDULE_NAMES = ("linear", "cosine", "loglinear")
SAMPLING_STRATEGIES = ("ancestral", "random", "confidence")


@dataclass(frozen=True)
class MaskSchedule:
    """alpha(t), the probability that a token is still unmasked at time t in [0, 1], and its derivative.

    "linear": 1 - t. "cosine": cos(pi t / 2) (MaskGIT's masking curve, Chang et al. 2022). "loglinear":
    1 - (1 - eps) t = exp(-sigma(t)) with MDLM's default "log-linear" noise sigma(t) = -log(1 - (1 - eps) t); it stops
    at alpha(1) = eps > 0, so its NELBO leaves out at most eps * sum_l H(x0^l) nats (the t = 1 prior term).
    """

    name: str = "loglinear"
    eps: float = 1e-3

    def __post_init__(self):
        if self.name not in SCHEDULE_NAMES:
            raise ValueError(f"unknown mask schedule {self.name!r}; choose one of {list(SCHEDULE_NAMES)}.")
        if not 0 <= self.eps < 1:
            raise ValueError(f"eps must be in [0, 1); got {self.eps!r}.")

    def alpha(self, t: Tensor) -> Tensor:
        if self.name == "linear":
            return 1 - t
        if self.name == "cosine":
            return torch.cos(math.pi / 2 * t)
        return 1 - (1 - self.eps) * t

    def alpha_prime(self, t: Tensor) -> Tensor:
        """d alpha / dt (negative: tokens only get masked as t grows)."""
        if self.name == "linear":
            return -torch.ones_like(t)
        if self.name == "cosine":
            return -math.pi / 2 * torch.sin(math.pi / 2 * t)
        return -(1 - self.eps) * torch.ones_like(t)

    def loss_weight(self, t: Tensor) -> Tensor:
        """The MDLM NELBO weight -alpha'(t) / (1 - alpha(t)) on the cross-entropy of masked tokens."""
        return -self.alpha_prime(t) / (1 - self.alpha(t))


def as_mask_schedule(schedule: str | MaskSchedule) -> MaskSchedule:
    """Accept a schedule name (default options) or a MaskSchedule."""
    return schedule if isinstance(schedule, MaskSchedule) else MaskSchedule(schedule)


def sample_t(
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    device=None,
    low_discrepancy: bool = True,
    t_min: float = 1e-3,
) -> Tensor:
    """Training times t ~ U[t_min, 1], `[B]`.

    `low_discrepancy` spreads one uniform draw over the batch, t_i = (u + i / B) mod 1 (the low-discrepancy sampler
    of Kingma et al. 2021, VDM; MDLM uses it), which lowers the variance of the batch loss. `t_min` > 0 avoids the
    1 / t blow-up of the weight at t -> 0, as MDLM's sampling_eps does.
    """
    if not 0 <= t_min < 1:
        raise ValueError(f"t_min must be in [0, 1); got {t_min!r}.")
    u = draw(torch.rand, 1 if low_discrepancy else batch_size, generator=generator, device=device)
    if low_discrepancy:
        u = (u + torch.arange(batch_size, device=device) / batch_size) % 1
    return t_min + (1 - t_min) * u


def mask_tokens(
    x0: Tensor,
    t: float | Tensor,
    schedule: str | MaskSchedule,
    mask_id: int,
    generator: torch.Generator | None = None,
    *,
    keep_mask: Tensor | None = None,
) -> Tensor:
    """Sample the absorbing forward process q(x_t | x0): each token becomes `mask_id` with prob 1 - alpha(t).

    Positions where `keep_mask` is True are never masked (e.g. a prompt the model conditions on).
    """
    _check_tokens(x0, mask_id, "x0")
    t = _batch_t(t, x0)
    p_mask = append_dims(1 - as_mask_schedule(schedule).alpha(t), x0.ndim)
    masked = draw(torch.rand, x0.shape, generator=generator, device=x0.device) < p_mask
    if keep_mask is not None:
        masked &= ~_check_bool_mask(keep_mask, x0, "keep_mask")
    return torch.where(masked, mask_id, x0)


def masked_diffusion_loss(
    logits_fn: LogitsFn,
    x0: Tensor,
    *,
    schedule: str | MaskSchedule = "loglinear",
    mask_id: int,
    generator: torch.Generator | None = None,
    weight_mask: Tensor | None = None,
    keep_mask: Tensor | None = None,
    t: float | Tensor | None = None,
    low_discrepancy: bool = True,
    t_min: float = 1e-3,
) -> Tensor:
    """Per-example continuous-time MDLM NELBO `[B]` in nats (Sahoo et al. 2024, with the SUBS parameterization):

        L = E_t E_{q(x_t | x0)} [ -alpha'(t) / (1 - alpha(t)) * sum_{l : x_t^l = mask} -log p_theta(x0^l | x_t) ]

    summed over positions (divide by the token count for nats per token). `weight_mask` (0/1 or float, shape of x0)
    scales each position's term, e.g. 0 on padding; `keep_mask` positions are never masked, hence never scored.
    t is drawn by `sample_t` unless given (a float or `[B]`).
    """
    schedule = as_mask_schedule(schedule)
    if t is None:
        t = sample_t(x0.shape[0], generator=generator, device=x0.device, low_discrepancy=low_discrepancy, t_min=t_min)
    t = _batch_t(t, x0)
    xt = mask_tokens(x0, t, schedule, mask_id, generator, keep_mask=keep_mask)
    log_probs = _token_log_probs(logits_fn(xt, t), xt, mask_id)
    if (x0 >= log_probs.shape[-1]).any():
        raise ValueError(f"x0 holds token ids >= {log_probs.shape[-1]}, the number of logits logits_fn returns.")
    nll = -log_probs.gather(-1, x0.long().unsqueeze(-1)).squeeze(-1)
    scored = torch.where(xt == mask_id, nll, 0.0)  # SUBS: unmasked positions are carried over and cost nothing
    if weight_mask is not None:
        if weight_mask.shape != x0.shape:
            raise ValueError(f"weight_mask has shape {tuple(weight_mask.shape)}; it must match x0 {tuple(x0.shape)}.")
        scored = scored * weight_mask
    return schedule.loss_weight(t) * scored.flatten(1).sum(1)


@torch.no_grad()
def sample_masked(
    logits_fn: LogitsFn,
    shape: tuple[int, ...],
    *,
    steps: int,
    schedule: str | MaskSchedule = "loglinear",
    mask_id: int,
    generator: torch.Generator | None = None,
    x_init: Tensor | None = None,
    keep_mask: Tensor | None = None,
    temperature: float = 1.0,
    strategy: str = "ancestral",
    callback: Callable[[dict], None] | None = None,
    device=None,
) -> Tensor:
    """Generate tokens by reverse unmasking from t = 1 to t = 0 in `steps` uniform time steps.

    Going from t to s < t, a masked token is revealed with probability (alpha(s) - alpha(t)) / (1 - alpha(t)), its
    value drawn from p_theta(x0 | x_t); revealed tokens never change (SUBS carry-over). `strategy` picks which:
    - "ancestral" (MDLM's ancestral sampler): each masked token independently with that probability. With the true
      posterior it is exact for independent positions at any step count, and for dependent ones as steps grow
      (tokens revealed in the same step are drawn from their marginals, independently).
    - "random": exactly round(probability * #masked) (at least 1) masked positions chosen uniformly. With the
      "linear" schedule and steps = #masked this reveals one token per step in a random order: any-order
      autoregressive sampling, exact with the true posterior.
    - "confidence" (MaskGIT, Chang et al. 2022): the same count, at the positions whose drawn token is most probable.
      Trades diversity for quality; not an exact sampler.
    `temperature` divides the logits (0 = argmax).

    Starts from all-mask, or from `x_init` (its `mask_id` entries are filled in, the rest kept). With `keep_mask`,
    only the True positions of `x_init` are kept and every other position is generated (infilling / prompting).
    `callback` gets {"i", "t", "s", "x"} after each step. Returns a LongTensor of `shape` with no mask left.
    """
    if strategy not in SAMPLING_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {list(SAMPLING_STRATEGIES)}.")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}.")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = argmax); got {temperature!r}.")
    schedule = as_mask_schedule(schedule)
    x = _initial_tokens(tuple(shape), mask_id, x_init, keep_mask, device)
    times = torch.linspace(1, 0, steps + 1, device=x.device)
    for i in range(steps):
        t, s = times[i], times[i + 1]
        if not (x == mask_id).any():
            break
        logits = logits_fn(x, t.expand(x.shape[0]))
        x = unmask_step(logits, x, t=t, s=s, schedule=schedule, mask_id=mask_id, generator=generator,
                        temperature=temperature, strategy=strategy)
        if callback is not None:
            callback({"i": i, "t": float(t), "s": float(s), "x": x})
    return x


def unmask_step(
    logits: Tensor,
    x: Tensor,
    *,
    t: float | Tensor,
    s: float | Tensor,
    schedule: str | MaskSchedule,
    mask_id: int,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
    strategy: str = "ancestral",
) -> Tensor:
    """One reverse step t -> s < t given the model's `logits` at x_t (MDLM's ancestral update with SUBS).

    Masked tokens are revealed with probability (alpha(s) - alpha(t)) / (1 - alpha(t)), chosen by `strategy` as in
    `sample_masked`, with values drawn from p_theta(x0 | x_t); unmasked tokens are carried over. Modalities that step
    tokens together with a continuous part (e.g. tables) call this inside their own joint loop.
    """
    schedule = as_mask_schedule(schedule)
    masked = x == mask_id
    tokens, confidence = _draw_tokens(_token_log_probs(logits, x, mask_id), temperature, generator)
    alpha_t, alpha_s = schedule.alpha(torch.as_tensor(t)), schedule.alpha(torch.as_tensor(s))
    reveal_prob = torch.where(alpha_t < 1, (alpha_s - alpha_t) / (1 - alpha_t).clamp(min=1e-12), 1.0)
    if strategy == "ancestral":
        reveal = masked & (draw(torch.rand, x.shape, generator=generator, device=x.device) < reveal_prob.to(x.device))
    elif strategy == "random":
        reveal = _reveal_top(draw(torch.rand, x.shape, generator=generator, device=x.device), masked, reveal_prob)
    else:
        reveal = _reveal_top(confidence, masked, reveal_prob)
    return torch.where(reveal, tokens, x)


def _draw_tokens(log_probs: Tensor, temperature: float, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """One token per position from softmax(log_probs / temperature) by inverse CDF, and its log-probability.

    The CDF is in float64 and the uniform is scaled by its total so a token of probability 0 is never drawn.
    """
    if temperature == 0:
        tokens = log_probs.argmax(-1)
    else:
        cdf = (log_probs.double() / temperature).softmax(-1).cumsum(-1)
        u = draw(torch.rand, cdf.shape[:-1], generator=generator, device=cdf.device, dtype=torch.float64)
        tokens = (cdf < u.unsqueeze(-1) * cdf[..., -1:]).sum(-1)
    return tokens, log_probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def _reveal_top(scores: Tensor, masked: Tensor, fraction: Tensor) -> Tensor:
    """Reveal the round(fraction * #masked) (at least one) highest-scoring masked positions of each example."""
    scores = torch.where(masked, scores.to(torch.float32), -math.inf).flatten(1)
    count = (masked.flatten(1).sum(1) * fraction).round().clamp(min=1)
    rank = scores.argsort(dim=1, descending=True).argsort(dim=1)
    return ((rank < count.unsqueeze(1)) & masked.flatten(1)).reshape(masked.shape)


def _token_log_probs(logits: Tensor, xt: Tensor, mask_id: int) -> Tensor:
    """float32 log p_theta(x0 | x_t) over real tokens: SUBS zero masking removes the mask token if it has a logit."""
    if not isinstance(logits, Tensor) or logits.shape[:-1] != xt.shape:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits_fn must return logits of shape {(*xt.shape, 'V')} for tokens {tuple(xt.shape)}; "
                         f"got {got}.")
    logits = logits.float()
    if mask_id < logits.shape[-1]:
        logits = logits.index_fill(-1, torch.tensor([mask_id], device=logits.device), -math.inf)
    return logits.log_softmax(-1)


def _initial_tokens(shape, mask_id: int, x_init: Tensor | None, keep_mask: Tensor | None, device) -> Tensor:
    if x_init is None:
        if keep_mask is not None:
            raise ValueError("keep_mask needs x_init: pass the tokens to keep as x_init.")
        return torch.full(shape, mask_id, dtype=torch.long, device=device)
    if tuple(x_init.shape) != shape:
        raise ValueError(f"x_init has shape {tuple(x_init.shape)} but shape is {shape}; they must match.")
    _check_tokens(x_init, mask_id, "x_init", allow_mask=True)
    x = x_init.long()
    if keep_mask is None:
        return x.clone()
    keep = _check_bool_mask(keep_mask, x, "keep_mask")
    if (x[keep] == mask_id).any():
        raise ValueError("x_init has mask_id at keep_mask positions; a kept position needs a real token.")
    return torch.where(keep, x, mask_id)


def _batch_t(t: float | Tensor, x: Tensor) -> Tensor:
    t = torch.as_tensor(t, dtype=torch.float32, device=x.device)
    if t.ndim == 0 or (t.ndim == 1 and t.shape[0] in (1, x.shape[0])):
        return t.reshape(-1).expand(x.shape[0])
    raise ValueError(f"t must be a float, a 0-d tensor or shape [{x.shape[0]}]; got shape {tuple(t.shape)}.")


def _check_tokens(x: Tensor, mask_id: int, name: str, *, allow_mask: bool = False) -> None:
    if not isinstance(x, Tensor) or x.dtype == torch.bool or x.is_floating_point() or x.is_complex():
        kind = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{name} must be an integer tensor of token ids; got {kind}. Use x.long().")
    if x.ndim < 1:
        raise ValueError(f"{name} must have a batch dimension (shape [B, ...]).")
    if (x < 0).any() or (not allow_mask and (x == mask_id).any()):
        raise ValueError(f"{name} must hold token ids >= 0{'' if allow_mask else f' other than mask_id={mask_id}'}.")


def _check_bool_mask(mask: Tensor, x: Tensor, name: str) -> Tensor:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != x.shape:
        got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"{name} must be a bool tensor shaped like the tokens {tuple(x.shape)}; got {got}.")
    return mask.to(x.device)
