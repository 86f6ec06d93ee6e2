"""Masked (absorbing-state) discrete diffusion in continuous time: MDLM (Sahoo et al. 2024, "Simple and effective
masked diffusion language models").

Tokens are integer tensors `[B, ...]` over a vocabulary {0, ..., V-1} plus one absorbing `mask_id` (usually V).
Forward process: each token independently stays itself with probability alpha(t) and becomes `mask_id` otherwise,
alpha(0) = 1, alpha(1) ~ 0. A model `logits_fn(x_t, t, **cond) -> [B, ..., V]` predicts x0 at every position
(`cond`: the extra keyword arguments of `masked_diffusion_loss` / `sample_masked`, passed through); with the SUBS
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

LogitsFn = Callable[..., Tensor]  # logits_fn(x_t, t, **cond) -> [B, ..., V]

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
    validate: bool = True,
) -> Tensor:
    """Sample the absorbing forward process q(x_t | x0): each token becomes `mask_id` with prob 1 - alpha(t).

    Positions where `keep_mask` is True are never masked (e.g. a prompt the model conditions on). `validate=False`
    skips the check of the token values (a host synchronisation).
    """
    _check_tokens(x0, mask_id, "x0", values=validate)
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
    validate: bool = True,
    **cond,
) -> Tensor:
    """Per-example continuous-time MDLM NELBO `[B]` in nats (Sahoo et al. 2024, with the SUBS parameterization):

        L = E_t E_{q(x_t | x0)} [ -alpha'(t) / (1 - alpha(t)) * sum_{l : x_t^l = mask} -log p_theta(x0^l | x_t) ]

    summed over positions (divide by the token count for nats per token). `weight_mask` (0/1 or float, shape of x0)
    scales each position's term, e.g. 0 on padding; `keep_mask` positions are never masked, hence never scored.
    t is drawn by `sample_t` unless given (a float or `[B]`). `cond` (keyword tensors, batch dim 0) is passed on as
    `logits_fn(x_t, t, **cond)`.

    `validate` checks the token ids (>= 0, not `mask_id`, < the number of logits); each check reads a tensor value
    on the host (a device synchronisation). With `validate=False` no Python branch depends on a tensor value, so the
    loss traces under `torch.compile(fullgraph=True)` (pass `generator=None` there: dynamo cannot trace generators)
    and a training step never waits for the device; out-of-range ids then fail inside `gather` instead.
    """
    schedule = as_mask_schedule(schedule)
    if t is None:
        t = sample_t(x0.shape[0], generator=generator, device=x0.device, low_discrepancy=low_discrepancy, t_min=t_min)
    t = _batch_t(t, x0)
    xt = mask_tokens(x0, t, schedule, mask_id, generator, keep_mask=keep_mask, validate=validate)
    log_probs = _token_log_probs(logits_fn(xt, t, **cond), xt, mask_id)
    if validate and (x0 >= log_probs.shape[-1]).any():
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
    cache: bool = False,
    **cond,
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
    `temperature` divides the logits (0 = argmax). Tokens are drawn only at the positions being revealed (all masked
    ones for "confidence"), see `unmask_step`.

    Conditioning: every keyword argument not named above (`cond`, tensors with batch dim 0) is passed on unchanged,
    `logits_fn(x_t, t, **cond)`, as `masked_diffusion_loss` does in training.

    `cache=True` (the caching of MDLM's sampler, Sahoo et al. 2024): when a step reveals no token, x_t is unchanged,
    so the next step reuses the logits instead of calling `logits_fn`. Only valid when `logits_fn` ignores t (a
    time-independent SUBS denoiser, as MDLM's); it then gives the same tokens as `cache=False` for the same
    generator draws, with fewer network calls (many when steps >> sequence length). It only fires with "ancestral":
    the other strategies reveal at least one token per step.

    Starts from all-mask, or from `x_init` (its `mask_id` entries are filled in, the rest kept). With `keep_mask`,
    only the True positions of `x_init` are kept and every other position is generated (infilling / prompting).
    `callback` gets {"i", "t", "s", "x"} after each step. Returns a LongTensor of `shape` with no mask left.
    """
    _check_strategy(strategy)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}.")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = argmax); got {temperature!r}.")
    schedule = as_mask_schedule(schedule)
    x = _initial_tokens(tuple(shape), mask_id, x_init, keep_mask, device)
    times = torch.linspace(1, 0, steps + 1, device=x.device)
    logits = None  # the logits at the current x_t, while they may be reused
    for i in range(steps):
        t, s = times[i], times[i + 1]
        if not (x == mask_id).any():
            break
        if logits is None:
            logits = logits_fn(x, t.expand(x.shape[0]), **cond)
        x_next = unmask_step(logits, x, t=t, s=s, schedule=schedule, mask_id=mask_id, generator=generator,
                             temperature=temperature, strategy=strategy)
        if not (cache and torch.equal(x_next, x)):
            logits = None  # x_t changed (or no caching): the next step calls the network
        x = x_next
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

    Only the rows of `logits` that are needed are read: for "ancestral" and "random" the positions are chosen first
    and tokens drawn only there; "confidence" draws at every masked position. The rows are gathered, in chunks of
    bounded size, and normalised in the logits' dtype (bf16 / fp16 rows upcast to float32), so no `[B, L, V]`
    probability tensor is ever built.
    """
    _check_strategy(strategy)
    schedule = as_mask_schedule(schedule)
    _check_logits(logits, x)
    masked = x == mask_id
    alpha_t, alpha_s = schedule.alpha(torch.as_tensor(t)), schedule.alpha(torch.as_tensor(s))
    reveal_prob = torch.where(alpha_t < 1, (alpha_s - alpha_t) / (1 - alpha_t).clamp(min=1e-12), 1.0).to(x.device)
    if strategy == "confidence":
        where = masked.nonzero(as_tuple=True)
        tokens, log_prob = _draw_tokens(logits, where, mask_id, temperature, generator)
        confidence = torch.full(x.shape, -math.inf, device=x.device).index_put_(where, log_prob.float())
        reveal = _reveal_top(confidence, masked, reveal_prob)
        return torch.where(reveal, x.index_put(where, tokens.to(x.dtype)), x)
    u = draw(torch.rand, x.shape, generator=generator, device=x.device)
    if strategy == "ancestral":
        reveal = masked & (u < (append_dims(reveal_prob, x.ndim) if reveal_prob.ndim == 1 else reveal_prob))
    else:
        reveal = _reveal_top(u, masked, reveal_prob)
    where = reveal.nonzero(as_tuple=True)
    tokens, _ = _draw_tokens(logits, where, mask_id, temperature, generator)
    return x.index_put(where, tokens.to(x.dtype))


_CHUNK_ELEMENTS = 1 << 22  # logits entries normalised at once in `_draw_tokens` (16 MiB of float32)


def _draw_tokens(
    logits: Tensor,
    where: tuple[Tensor, ...],
    mask_id: int,
    temperature: float,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """A token from softmax(log p / temperature) at each position `where` (M index tensors), and its log p.

    The M rows of logits are gathered in chunks, SUBS-masked and log-softmaxed in their dtype (at least float32).
    Drawing is the Gumbel-max trick (Gumbel 1954; Maddison et al. 2014), argmax_v (log p_v / temperature + G_v) with
    G_v = -log(-log u_v) i.i.d. standard Gumbel, the same race torch.multinomial runs for one sample: exact in
    distribution without a cumulative sum (whose float32 rounding would distort the many tiny probabilities of a
    large vocabulary), and a token of probability 0 (-inf logit) is never drawn. The uniforms are float64 so the
    Gumbel tail reaches ~37 and no token is cut below probability ~1e-16 (float32 uniforms stop at ~16.6, cutting
    up to ~6e-8 from every token); -log u is then taken to the logits' dtype. temperature = 0 takes the argmax.
    The draws come from `generator` on its own device (one uniform per vocabulary entry: for a large V keep the
    generator on the logits' device).
    """
    count, vocab = where[0].numel(), logits.shape[-1]
    tokens = torch.empty(count, dtype=torch.long, device=logits.device)
    dtype = torch.promote_types(logits.dtype, torch.float32)
    log_prob = torch.empty(count, dtype=dtype, device=logits.device)
    rows_per_chunk = max(1, _CHUNK_ELEMENTS // vocab)
    for start in range(0, count, rows_per_chunk):
        chunk = slice(start, start + rows_per_chunk)
        log_probs = _subs_logits(logits[tuple(i[chunk] for i in where)].to(dtype), mask_id).log_softmax(-1)
        if temperature == 0:
            chosen = log_probs.argmax(-1)
        else:
            u = draw(torch.rand, log_probs.shape, generator=generator, device=log_probs.device, dtype=torch.float64)
            gumbel = -(-u.log()).to(dtype).log()
            chosen = (log_probs / temperature + gumbel).argmax(-1)
        tokens[chunk] = chosen
        log_prob[chunk] = log_probs.gather(-1, chosen.unsqueeze(-1)).squeeze(-1)
    return tokens, log_prob


def _reveal_top(scores: Tensor, masked: Tensor, fraction: Tensor) -> Tensor:
    """Reveal the round(fraction * #masked) (at least one) highest-scoring masked positions of each example."""
    scores = torch.where(masked, scores.to(torch.float32), -math.inf).flatten(1)
    count = (masked.flatten(1).sum(1) * fraction).round().clamp(min=1)
    rank = scores.argsort(dim=1, descending=True).argsort(dim=1)
    return ((rank < count.unsqueeze(1)) & masked.flatten(1)).reshape(masked.shape)


def _subs_logits(logits: Tensor, mask_id: int) -> Tensor:
    """SUBS zero masking: the mask token, if it has a logit, gets -inf (never predicted). No host synchronisation."""
    if mask_id < logits.shape[-1]:
        logits = logits.masked_fill(torch.arange(logits.shape[-1], device=logits.device) == mask_id, -math.inf)
    return logits


def _token_log_probs(logits: Tensor, xt: Tensor, mask_id: int) -> Tensor:
    """float32 (or wider) log p_theta(x0 | x_t) over real tokens at every position (the training loss needs them)."""
    _check_logits(logits, xt)
    return _subs_logits(logits.to(torch.promote_types(logits.dtype, torch.float32)), mask_id).log_softmax(-1)


def _check_logits(logits: Tensor, xt: Tensor) -> None:
    if not isinstance(logits, Tensor) or logits.shape[:-1] != xt.shape:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits_fn must return logits of shape {(*xt.shape, 'V')} for tokens {tuple(xt.shape)}; "
                         f"got {got}.")


def _check_strategy(strategy: str) -> None:
    if strategy not in SAMPLING_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {list(SAMPLING_STRATEGIES)}.")


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


def _check_tokens(x: Tensor, mask_id: int, name: str, *, allow_mask: bool = False, values: bool = True) -> None:
    """Type and shape checks always; the value checks (host synchronisations) only if `values`."""
    if not isinstance(x, Tensor) or x.dtype == torch.bool or x.is_floating_point() or x.is_complex():
        kind = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{name} must be an integer tensor of token ids; got {kind}. Use x.long().")
    if x.ndim < 1:
        raise ValueError(f"{name} must have a batch dimension (shape [B, ...]).")
    if values and ((x < 0).any() or (not allow_mask and (x == mask_id).any())):
        raise ValueError(f"{name} must hold token ids >= 0{'' if allow_mask else f' other than mask_id={mask_id}'}.")


def _check_bool_mask(mask: Tensor, x: Tensor, name: str) -> Tensor:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != x.shape:
        got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"{name} must be a bool tensor shaped like the tokens {tuple(x.shape)}; got {got}.")
    return mask.to(x.device)
