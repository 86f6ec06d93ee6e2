"""Generating token sequences with a :class:`~noisecraft.sequence.model.SequenceDiffusionModel`: MDLM's reverse
unmasking (Sahoo et al. 2024, "Simple and Effective Masked Diffusion Language Models", Sec. 3.3 and Alg. 2) through
:func:`noisecraft.diffusion.masked.sample_masked`, with prompts (prefix), infilling (template), nucleus sampling,
temperature and classifier-free guidance as logits processors wrapped around the model's ``logits``.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from noisecraft.diffusion.masked import SAMPLING_STRATEGIES, sample_masked


def generate_tokens(
    model: nn.Module,
    n: int,
    length: int,
    *,
    steps: int,
    seed: int,
    strategy: str = "ancestral",
    temperature: float = 1.0,
    top_p: float = 1.0,
    prefix: Tensor | None = None,
    template: Tensor | None = None,
    guidance: float = 1.0,
    cond: dict[str, Tensor] | None = None,
    cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
    device=None,
) -> Tensor:
    """``n`` sequences of ``length`` tokens, LongTensor ``[n, length]`` on ``device`` (default: the model's), no mask.

    Reverse process (MDLM, Sahoo et al. 2024, Eq. 7-8 with SUBS): from all-mask at t = 1 down to t = 0 in ``steps``
    uniform steps; going t -> s a masked token is revealed with probability (alpha(s) - alpha(t)) / (1 - alpha(t)),
    drawn from p_theta(x0 | x_t), and revealed tokens never change. ``strategy`` ("ancestral", "random",
    "confidence") is that of :func:`~noisecraft.diffusion.masked.sample_masked`; the schedule is the model's.

    Randomness: ONE generator, ``torch.Generator(device).manual_seed(seed)``, drives the whole batch, so the same
    ``seed`` (with the same n, length, options and device) gives the same tokens bit for bit; sequence i depends on
    n (generate with the same n to reproduce it).

    - ``prefix`` LongTensor ``[P]``: the first P tokens are given and kept (a prompt); ``template`` LongTensor
      ``[length]``: infilling, the entries != ``mask_id`` are kept and the ``mask_id`` ones generated. Both may be
      given if they agree on the prefix positions. Kept tokens are never re-sampled (SUBS carry-over).
    - ``temperature`` divides the log-probabilities (0 = argmax); ``top_p`` < 1 is nucleus sampling (Holtzman et al.
      2020): at each masked position only the most probable tokens whose cumulative probability (of the tempered
      distribution) reaches ``top_p`` stay drawable (at least the top one). ``top_p = 1`` and ``temperature = 1``
      leave the model's distribution untouched, bit for bit.
    - ``cond``: the network's condition keywords (``class_labels`` [n], ``cond`` [n, cond_dim], ``cond_mask`` [n],
      ``padding_mask`` [n, length]); a batch of one (or a 0-d label) is broadcast to n. ``guidance`` w is
      classifier-free guidance (Ho & Salimans 2022) in logit space, per position:

          log p_w(x0^l | x_t) = log p_u + w (log p_c - log p_u),   log p = log_softmax(logits)

      i.e. p_w proportional to p_u^(1 - w) p_c^w; p_c is conditioned on ``cond``, p_u on the "no condition" inputs:
      class label ``num_classes`` ("no label") and ``cond_mask`` False (the learned null vector), other keys (a
      padding mask) unchanged. w = 1 is the conditional model (one network call per step); w = 0 the unconditional
      one; any other w batches both in one call of 2n sequences.
    - ``cache`` (MDLM's caching, Sahoo et al. 2024, Sec. 3.3 "efficient sampling"): when a step reveals no token,
      x_t is unchanged and the next step reuses the logits instead of calling the network. This is exact only when
      the denoiser ignores t (``time_conditioning = "none"``: p_theta(x0 | x_t) is a function of x_t alone), and
      guidance / top-p are functions of the logits, so it stays exact with them. With adaLN time conditioning the
      logits change with t, so reusing them would sample from a different chain: caching is then NOT used, whatever
      ``cache`` says (``model.time_independent`` decides). Caching never changes an output bit, only the number of
      network calls.
    - ``progress(done, total)`` is called after each step (total = ``steps``; a last call with done = total when
      every token is revealed early). An exception raised inside it (a pipeline's cancel) propagates unchanged.

    Call it on an eval-mode model (dropout off): it runs under ``torch.no_grad`` and never changes the model.
    """
    spec = model.spec
    mask_id, vocab_size = spec.mask_id, spec.vocab_size
    _check_int("n", n, 1)
    _check_int("length", length, 1)
    _check_int("steps", steps, 1)
    if length > spec.max_length:
        raise ValueError(f"length {length} exceeds the model's max_length={spec.max_length}")
    if strategy not in SAMPLING_STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {list(SAMPLING_STRATEGIES)}")
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = argmax), got {temperature!r}")
    if not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    if not (isinstance(guidance, (int, float)) and math.isfinite(guidance)):
        raise ValueError(f"guidance must be a finite number, got {guidance!r}")
    if device is None:
        device = _model_device(model)
    device = torch.device(device)

    x_init, keep_mask = _initial(n, length, prefix, template, mask_id, vocab_size, device)
    cond = {key: _batched(value, n, key, device) for key, value in (cond or {}).items()}
    logits_fn = _guided_logits_fn(model, cond, float(guidance))
    if top_p < 1 and temperature > 0:
        logits_fn = _nucleus_logits_fn(logits_fn, mask_id, float(top_p), float(temperature))

    generator = torch.Generator(device=device).manual_seed(int(seed))
    done = {"steps": 0}

    def callback(info: dict) -> None:
        done["steps"] = info["i"] + 1
        if progress is not None:
            progress(done["steps"], steps)

    tokens = sample_masked(logits_fn, (n, length), steps=steps, schedule=spec.schedule, mask_id=mask_id,
                           generator=generator, x_init=x_init, keep_mask=keep_mask, temperature=float(temperature),
                           strategy=strategy, callback=callback, device=device,
                           cache=bool(cache) and model_ignores_t(model))
    if progress is not None and done["steps"] < steps:
        progress(steps, steps)
    return tokens


def model_ignores_t(model: nn.Module) -> bool:
    """Whether ``model``'s logits are independent of t, the condition under which MDLM's caching is exact."""
    return bool(getattr(model, "time_independent", False))


def truncate_at_eos(tokens: Tensor, eos_id: int | None, *, keep_eos: bool = False) -> list:
    """Token id lists with everything after the first ``eos_id`` dropped (the eos itself too, unless ``keep_eos``):
    how a fixed-length sample becomes a variable-length sequence. ``tokens`` ``[L]`` -> list of ints;
    ``[n, L]`` -> a list of n lists. ``eos_id`` None: nothing is dropped."""
    if not isinstance(tokens, Tensor) or tokens.ndim not in (1, 2):
        raise ValueError(f"tokens must be a tensor of shape [L] or [n, L], got {getattr(tokens, 'shape', tokens)!r}")
    rows = tokens.tolist()

    def cut(row: list[int]) -> list[int]:
        if eos_id is None or eos_id not in row:
            return row
        end = row.index(eos_id)
        return row[: end + 1] if keep_eos else row[:end]

    return cut(rows) if tokens.ndim == 1 else [cut(row) for row in rows]


# --- logits processors: each is a logits_fn(x_t, t, **cond) wrapping another ---


def _guided_logits_fn(model: nn.Module, cond: dict[str, Tensor], guidance: float) -> Callable:
    """The model's logits with ``cond`` bound; with guidance != 1, CFG in logit space (see `generate_tokens`)."""
    if guidance == 1:
        return lambda x, t: model.logits(x, t, **cond)
    uncond = unconditional(model, cond)
    if "cond" in cond and "cond_mask" not in cond:  # the batched call needs the same keys on both halves
        cond = {**cond, "cond_mask": torch.ones_like(uncond["cond_mask"])}
    if guidance == 0:
        return lambda x, t: model.logits(x, t, **uncond)
    both = {key: torch.cat([cond[key], uncond[key]]) for key in cond}

    def guided(x: Tensor, t: Tensor) -> Tensor:
        logits = model.logits(torch.cat([x, x]), torch.cat([t, t]), **both)
        log_c, log_u = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1).chunk(2)
        return log_u + guidance * (log_c - log_u)

    return guided


def unconditional(model: nn.Module, cond: dict[str, Tensor]) -> dict[str, Tensor]:
    """The "no condition" inputs matching ``cond``: class labels -> ``num_classes`` ("no label"), ``cond_mask`` ->
    False (the network's learned null vector); other keys (``padding_mask``) unchanged."""
    if not any(key in cond for key in ("class_labels", "cond")):
        raise ValueError("guidance != 1 needs a condition to guide by: pass cond={'class_labels': ...} or "
                         "cond={'cond': ...}")
    uncond = dict(cond)
    if "class_labels" in cond:
        uncond["class_labels"] = torch.full_like(cond["class_labels"], model.spec.num_classes)
    if "cond" in cond or "cond_mask" in cond:
        first = next(iter(cond.values()))
        uncond["cond_mask"] = torch.zeros(first.shape[0], dtype=torch.bool, device=first.device)
    return uncond


def _nucleus_logits_fn(logits_fn: Callable, mask_id: int, top_p: float, temperature: float) -> Callable:
    """Nucleus (top-p) filtering (Holtzman et al. 2020) at the masked positions: tokens outside the smallest set whose
    tempered probability reaches ``top_p`` get -inf (never drawn); the most probable token always stays. Unmasked
    rows are returned unchanged (the sampler never reads them)."""

    def nucleus(x: Tensor, t: Tensor) -> Tensor:
        logits = logits_fn(x, t)
        where = (x == mask_id).nonzero(as_tuple=True)
        rows = logits[where].to(torch.promote_types(logits.dtype, torch.float32))
        probs = (rows.log_softmax(-1) / temperature).softmax(-1)
        sorted_probs, order = probs.sort(-1, descending=True)
        before = sorted_probs.cumsum(-1) - sorted_probs  # probability mass ranked above each token
        drop_sorted = before >= top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        return logits.index_put(where, rows.masked_fill(drop, -math.inf).to(logits.dtype))

    return nucleus


# --- inputs ---


def _initial(n: int, length: int, prefix: Tensor | None, template: Tensor | None, mask_id: int, vocab_size: int,
             device) -> tuple[Tensor | None, Tensor | None]:
    """x_init ``[n, length]`` with the given tokens and ``mask_id`` elsewhere, and keep_mask (True = given)."""
    if prefix is None and template is None:
        return None, None
    row = torch.full((length,), mask_id, dtype=torch.long)
    if template is not None:
        template = _check_ids("template", template, vocab_size, mask_id, allow_mask=True)
        if template.shape != (length,):
            raise ValueError(f"template must have shape [length]=[{length}], got {tuple(template.shape)}")
        row = template.clone()
    if prefix is not None:
        prefix = _check_ids("prefix", prefix, vocab_size, mask_id, allow_mask=False)
        if prefix.ndim != 1 or len(prefix) > length:
            raise ValueError(f"prefix must have shape [P] with P <= length={length}, got {tuple(prefix.shape)}")
        head = row[: len(prefix)]
        if template is not None and ((head != mask_id) & (head != prefix)).any():
            raise ValueError("prefix and template disagree on a position both give; give one or make them agree")
        row[: len(prefix)] = prefix
    keep = row != mask_id
    return row.to(device).expand(n, length).clone(), keep.to(device).expand(n, length).clone()


def _check_ids(name: str, tokens: Tensor, vocab_size: int, mask_id: int, *, allow_mask: bool) -> Tensor:
    if not isinstance(tokens, Tensor) or tokens.is_floating_point() or tokens.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of token ids, got {type(tokens).__name__}")
    tokens = tokens.detach().to("cpu", torch.long)
    ok = (tokens >= 0) & ((tokens < vocab_size) | (allow_mask & (tokens == mask_id)))
    if not ok.all():
        allowed = f"[0, {vocab_size})" + (f" or mask_id={mask_id}" if allow_mask else "")
        raise ValueError(f"{name} holds token ids outside {allowed}")
    return tokens


def _batched(value: Tensor, n: int, key: str, device) -> Tensor:
    """A condition with batch dim n on ``device``: 0-d tensors and batches of one are expanded."""
    if not isinstance(value, Tensor):
        raise TypeError(f"condition {key!r} must be a tensor with batch dim 0, got {type(value).__name__}")
    value = value.to(device)
    if value.ndim == 0:
        return value.expand(n).clone()
    if value.shape[0] == n:
        return value
    if value.shape[0] == 1:
        return value.expand(n, *value.shape[1:]).clone()
    raise ValueError(f"condition {key!r} has batch size {value.shape[0]}; give one value per sequence (n={n}) or one "
                     "value to broadcast")


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
