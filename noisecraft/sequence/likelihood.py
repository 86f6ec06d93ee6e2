"""Likelihood bounds of a sequence model: MDLM's continuous-time NELBO (Sahoo et al. 2024, "Simple and Effective
Masked Diffusion Language Models", Eq. 10-11) per token, the "perplexity bound" the MDLM paper reports, estimated
with t sampled given the number of masked tokens (bounded weights; see `nelbo`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from noisecraft.diffusion.loss import draw
from noisecraft.diffusion.masked import MaskSchedule


@torch.no_grad()
def nelbo(
    model: nn.Module,
    tokens: Tensor,
    *,
    num_samples: int = 16,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    padding_mask: Tensor | None = None,
    **cond: Tensor,
) -> dict:
    """Monte Carlo estimate of the NELBO of ``tokens`` ``[N, L]`` per (non-padding) token, in nats and bits.

    For a sequence x0 of T scored tokens, MDLM's continuous-time NELBO (Sahoo et al. 2024, Eq. 10-11, SUBS):

        NELBO(x0) = int_0^1 -alpha'(t) / (1 - alpha(t)) E_{q(x_t | x0)} [ sum_{l: x_t^l = mask}
                    -log p_theta(x0^l | x_t, t) ] dt  >=  -log p_theta(x0).

    Substituting u = 1 - alpha(t), the masking probability, gives int_0^1 (1/u) E_u[...] du for every schedule (the
    NELBO is invariant to the schedule, as in VDM, Kingma et al. 2021). Conditioning on the number m of masked
    tokens, u | m ~ Beta(m, T - m + 1) (the m-th smallest of T uniforms) and the masked set is a uniform m-subset,
    and int_0^1 C(T, m) u^(m-1) (1 - u)^(T-m) du = 1/m, so

        NELBO(x0) = E_{m ~ U{1..T}} E_{u, S | m} [ (T / m) sum_{l in S} -log p_theta(x0^l | x_t(S), t(u)) ],

    with t(u) = alpha^{-1}(1 - u). This is the same integral, sampled over t by importance sampling: the plain
    estimator with t ~ U[0, 1] weights one masked token by 1/t, whose variance grows like log(1 / t_min) and whose
    heavy right tail makes the sample standard error too small (measured: estimates ~3 "standard errors" low);
    here every weight is at most T, and a model predicting uniformly gets exactly T log V with zero variance.
    ``num_samples`` K draws per sequence, low-discrepancy over m: m_k = 1 + floor(T ((v + k / K) mod 1)), one
    uniform v per sequence. For "linear" and "cosine" schedules this is exactly MDLM's NELBO; "loglinear" stops at
    alpha(1) = eps, so MDLM's version omits the t = 1 prior term (at most eps * H per token), which this complete
    bound includes (t is capped at 1 for the masking probabilities above 1 - eps).

    Returns {"nats_per_token", "bits_per_token": the sum over sequences of their estimates / the number of scored
    tokens, "stderr_bits_per_token": its standard error with the sequences as independent units (ratio estimator,
    delta method: sqrt(N / (N - 1) sum_i (S_i - r T_i)^2) / sum_i T_i, S_i the estimate of sequence i); it includes
    the Monte Carlo noise and the spread between sequences, so it is the error bar with respect to the population
    the sequences come from (the Monte Carlo one when N = 1), "stderr_mc_bits_per_token": the Monte Carlo error
    alone given these sequences (conservative: stratification only lowers the true variance; NaN when K = 1),
    "num_samples": K, "tokens": the number of scored tokens, "sequences": N}.

    ``padding_mask`` bool ``[N, L]`` (True = real): padding is never masked nor scored and is passed to the network
    (hidden from attention), as for a model trained with ``make_loss_fn(loss_on_padding=False)``; for a model
    whose padding is data pass None: every position counts. ``cond``: the network's condition keywords
    (``class_labels``, ``cond``, ``cond_mask``) with batch dim N (or one value to broadcast). ``generator``: the
    draws' source (None: a CPU generator seeded 0, so the estimate is reproducible). ``batch_size``: sequences per
    network call. ``model``: a :class:`~noisecraft.sequence.model.SequenceDiffusionModel` (``.spec``, ``.logits``)
    in eval mode.
    """
    spec = model.spec
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(tokens, Tensor) or tokens.ndim != 2 or tokens.is_floating_point() or tokens.dtype == torch.bool:
        raise ValueError(f"tokens must be an integer tensor [N, L], got {getattr(tokens, 'shape', type(tokens))}")
    if tokens.numel() == 0:
        raise ValueError("tokens is empty")
    if ((tokens < 0) | (tokens >= spec.vocab_size)).any():
        raise ValueError(f"tokens must be ids in [0, {spec.vocab_size}) (no mask)")
    device = next(iter(model.parameters()), tokens).device
    tokens = tokens.to(device).long()
    count, length = tokens.shape
    if padding_mask is not None:
        if padding_mask.dtype != torch.bool or padding_mask.shape != tokens.shape:
            raise ValueError(f"padding_mask must be a bool tensor of shape {tuple(tokens.shape)}")
        real = padding_mask.to(device)
    else:
        real = torch.ones_like(tokens, dtype=torch.bool)
    scored = real.sum(1)  # T_i
    total_tokens = int(scored.sum())
    if total_tokens == 0:
        raise ValueError("every position is padding: there is nothing to score")
    cond = {key: _broadcast(value, count, key).to(device) for key, value in cond.items()}
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    schedule = spec.schedule

    offsets = draw(torch.rand, count, generator=generator, device=device, dtype=torch.float64)
    losses = torch.empty(count, num_samples, dtype=torch.float64, device=device)
    for start in range(0, count, batch_size):
        rows = slice(start, start + batch_size)
        x0, keep, size = tokens[rows], real[rows], scored[rows]
        extra = {key: value[rows] for key, value in cond.items()}
        if padding_mask is not None:
            extra["padding_mask"] = keep
        for k in range(num_samples):
            v = (offsets[rows] + k / num_samples) % 1
            m = (1 + (v * size).floor().long()).clamp(max=size.clamp(min=1))  # masked count, uniform on 1..T
            scores = draw(torch.rand, x0.shape, generator=generator, device=device, dtype=torch.float64)
            scores = torch.where(keep, scores, 2.0)  # padding: never among the m smallest
            u = scores.sort(dim=1).values.gather(1, (m - 1)[:, None])  # m-th smallest: Beta(m, T - m + 1)
            masked = (scores <= u) & keep  # a uniform m-subset of the real positions
            t = _time_of_mask_probability(schedule, u.squeeze(1)).float()
            x_t = torch.where(masked, spec.mask_id, x0)
            logits = model.logits(x_t, t, **extra)
            log_probs = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)
            nll = -log_probs.gather(-1, x0.unsqueeze(-1)).squeeze(-1)
            total = torch.where(masked, nll, 0.0).double().sum(1)
            losses[rows, k] = size.double() / m.double() * total

    per_sequence = losses.mean(1)  # S_i
    rate = float(per_sequence.sum() / total_tokens)
    mc_var = losses.var(1, unbiased=True) / num_samples if num_samples > 1 else torch.full_like(per_sequence, math.nan)
    stderr_mc = math.sqrt(float(mc_var.sum())) / total_tokens
    if count > 1:
        residual = per_sequence - rate * scored.double()
        stderr = math.sqrt(count / (count - 1) * float((residual**2).sum())) / total_tokens
    else:
        stderr = stderr_mc
    return {
        "nats_per_token": rate,
        "bits_per_token": rate / math.log(2),
        "stderr_bits_per_token": stderr / math.log(2),
        "stderr_mc_bits_per_token": stderr_mc / math.log(2),
        "num_samples": num_samples,
        "tokens": total_tokens,
        "sequences": count,
    }


def _time_of_mask_probability(schedule: MaskSchedule, u: Tensor) -> Tensor:
    """t with 1 - alpha(t) = u (the inverse schedule), capped at 1 (loglinear masks at most 1 - eps by t = 1)."""
    if schedule.name == "linear":
        t = u
    elif schedule.name == "cosine":
        t = 2 / math.pi * torch.arccos((1 - u).clamp(-1, 1))
    else:
        t = u / (1 - schedule.eps)
    return t.clamp(0, 1)


def _broadcast(value: Tensor, count: int, key: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"condition {key!r} must be a tensor with batch dim 0, got {type(value).__name__}")
    if value.ndim == 0:
        return value.expand(count)
    if value.shape[0] == count:
        return value
    if value.shape[0] == 1:
        return value.expand(count, *value.shape[1:])
    raise ValueError(f"condition {key!r} has batch size {value.shape[0]}; give one per sequence ({count}) or one")
