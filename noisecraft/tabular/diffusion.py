"""Joint diffusion over mixed-type rows: Gaussian diffusion on numeric coordinates, masked diffusion on tokens.

TabDiff (Shi et al. 2025, Sec. 3) noises both parts with one shared time. Here the shared clock is the EDM noise
level sigma, and the masked-diffusion time is tied to it by the CDF of the training noise distribution:

    ln sigma ~ N(P_mean, P_std^2)   (EDM, Karras et al. 2022, Table 1)
    t(sigma) = Phi((ln sigma - P_mean) / P_std)                                            (the sigma <-> t map)

so t is exactly U(0, 1) when sigma follows EDM's training distribution -- the time distribution of MDLM's loss
(Sahoo et al. 2024, Eq. 10) -- and t(sigma_max = 80) ~ 1 (all tokens masked), t(0) = 0 (all revealed) at sampling.

Training minimises the sum of the two engine losses on one forward pass of the joint network,

    L = D_num * EDM-loss(sigma)  +  MDLM-NELBO(t(sigma))

(the EDM loss is a mean over numeric columns, the NELBO a sum over token columns; the factor D_num makes both sums).
Missing numeric values and columns given as conditions are excluded from the loss. Sampling runs an engine sampler
(Heun by default) on the numeric part and, after each of its steps sigma_i -> sigma_{i+1}, one MDLM ancestral
unmasking step t(sigma_i) -> t(sigma_{i+1}) on the tokens, using the logits of that step's first network call.
The sampler asks the network for its logits unpadded (``logits="flat"``, ``[B, sum of vocabulary sizes]``) and
draws each group of columns that share a vocabulary size with one ``unmask_step`` over exactly their logits, so no
token draw ever touches the padding of a narrow column to the widest one's vocabulary (with a 200-level column among
2-level ones, padding made sampling 2.6x slower, mostly in the token draws). Padded ids have probability 0 either way, so the distribution is the
same; the other network calls of a step skip the categorical head.

Conditioning ("inpainting" of the other columns): during training a random subset of columns is given clean to the
network (numeric ones as values with a flag, categorical ones as never-masked tokens), so at sampling time the
given columns of ``--where col=value`` are held at their values while the rest is generated around them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from noisecraft.diffusion.loss import LogNormalSigma, denoising_loss, draw, get_weighting
from noisecraft.diffusion.masked import masked_diffusion_loss, unmask_step
from noisecraft.diffusion.precond import EDMPrecond
from noisecraft.diffusion.samplers import get_sampler
from noisecraft.diffusion.schedules import karras


@dataclass(frozen=True)
class JointProcess:
    """The shared noise clock: EDM's sigma for numbers, t(sigma) for tokens (see the module docstring)."""

    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_data: float = 1.0  # quantile-normalised columns have unit variance
    mask_schedule: str = "loglinear"
    t_min: float = 1e-3  # MDLM's sampling_eps: training t >= t_min keeps the 1/t loss weight bounded

    @property
    def sigma_distribution(self) -> LogNormalSigma:
        return LogNormalSigma(p_mean=self.p_mean, p_std=self.p_std)

    def mask_time(self, sigma: Tensor | float) -> Tensor:
        """t(sigma) = Phi((ln sigma - P_mean) / P_std), with t(0) = 0."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        score = (sigma.clamp(min=1e-30).log() - self.p_mean) / self.p_std
        return torch.where(sigma > 0, torch.special.ndtr(score), 0.0)

    def to_dict(self) -> dict:
        return asdict(self)


class TabularDenoiser(nn.Module):
    """D(x_num, sigma; tokens, given, x_given) -> (x0_hat_num, logits).

    The numeric part is EDM's preconditioning (Karras et al. 2022, Eq. 7 with the Table 1 coefficients of
    ``EDMPrecond``): D = c_skip x + c_out F(c_in x; c_noise). The net returns ``(F, logits)``, so the engine's
    ``Precond`` returns ``(D, logits)``: the categorical logits come from the same network call, untouched.
    """

    def __init__(self, net: nn.Module, *, sigma_data: float = 1.0):
        super().__init__()
        self.precond = EDMPrecond(net, sigma_data=sigma_data)

    @property
    def net(self) -> nn.Module:
        return self.precond.net

    def forward(self, x: Tensor, sigma, *, tokens: Tensor, given: Tensor, x_given: Tensor,
                **layout) -> tuple[Tensor, Tensor | None]:
        """``layout``: the net's ``logits=`` ("padded", the default; "flat"; None), passed through."""
        return self.precond(x, sigma, tokens=tokens, given=given, x_given=x_given, **layout)


def draw_given(batch_size: int, num_columns: int, *, condition_rate: float, always: Tensor,
               generator: torch.Generator | None, device=None) -> Tensor:
    """Which columns each training row gets as clean conditions, ``[B, C]`` bool.

    A share ``condition_rate`` of rows is conditioned; such a row gives each column with its own probability
    u ~ U(0, 1), so condition sets of every size are trained, and always gives the columns flagged in ``always``
    (the ``--target`` column, the usual condition).
    """
    conditioned = draw(torch.rand, (batch_size, 1), generator=generator, device=device) < condition_rate
    share = draw(torch.rand, (batch_size, 1), generator=generator, device=device)
    chosen = draw(torch.rand, (batch_size, num_columns), generator=generator, device=device) < share
    return conditioned & (chosen | always.to(device))


def joint_loss(model: nn.Module, batch, generator: torch.Generator | None, *, process: JointProcess,
               mask_id: int, condition_rate: float = 0.0, always_given: Tensor | None = None) -> Tensor:
    """Per-row loss ``[B]`` for the shared Trainer; ``batch = (x_num [B, Dn], x_cat [B, Dc], observed [B, Dn])``."""
    x_num, x_cat, observed = batch
    batch_size, num_numeric, num_categorical = x_num.shape[0], x_num.shape[1], x_cat.shape[1]
    always = torch.zeros(num_numeric + num_categorical, dtype=torch.bool) if always_given is None else always_given
    given = draw_given(batch_size, num_numeric + num_categorical, condition_rate=condition_rate, always=always,
                       generator=generator, device=x_num.device)
    given_num, given_cat = given[:, :num_numeric], given[:, num_numeric:]
    scored_num = observed.bool() & ~given_num
    sigma = process.sigma_distribution(batch_size, generator=generator, device=x_num.device)
    t = process.mask_time(sigma).to(sigma.dtype).clamp(min=process.t_min)
    weighting = get_weighting("edm", sigma_data=process.sigma_data)
    predicted = {}

    def numeric_denoiser(x: Tensor, noise_level: Tensor, tokens: Tensor) -> Tensor:
        x0_hat, predicted["logits"] = model(x, noise_level, tokens=tokens, given=given_num.to(x.dtype), x_given=x_num)
        return torch.where(scored_num, x0_hat, x_num)  # missing or given entries cost nothing

    def logits_fn(tokens: Tensor, _t: Tensor) -> Tensor:
        if num_numeric:
            predicted["numeric"] = num_numeric * denoising_loss(
                lambda x, s: numeric_denoiser(x, s, tokens), x_num, sigma, weighting, generator=generator)
        else:
            numeric_denoiser(x_num, sigma, tokens)
        return predicted["logits"]

    if num_categorical:
        categorical = masked_diffusion_loss(logits_fn, x_cat, schedule=process.mask_schedule, mask_id=mask_id,
                                            generator=generator, keep_mask=given_cat, t=t, validate=False)
    else:
        logits_fn(x_cat, t)
        categorical = torch.zeros(batch_size, device=x_num.device)
    return categorical + predicted.get("numeric", 0.0)


@torch.no_grad()
def sample_rows(denoiser: nn.Module, num_rows: int, *, num_numeric: int, num_categorical: int, mask_id: int,
                process: JointProcess, steps: int = 32, sampler: str = "heun", sigma_min: float = 0.002,
                sigma_max: float = 80.0, rho: float = 7.0, given_num: Tensor | None = None,
                x_given: Tensor | None = None, given_tokens: Tensor | None = None,
                generator: torch.Generator | None = None, device=None,
                on_step: Callable[[], None] | None = None) -> tuple[Tensor, Tensor]:
    """Draw ``num_rows`` rows ``(x_num, tokens)`` by the joint sampler of the module docstring.

    ``given_num`` ``[Dn]`` bool and ``x_given`` ``[Dn]`` hold numeric conditions; ``given_tokens`` ``[Dc]`` holds a
    token for each given categorical column and ``mask_id`` elsewhere. ``on_step()`` is called after every step
    (progress, and the place a cancel check stops sampling).
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    given_num = torch.zeros(num_numeric, dtype=torch.bool) if given_num is None else given_num
    x_given = torch.zeros(num_numeric) if x_given is None else x_given
    given_num = given_num.to(device).expand(num_rows, num_numeric)
    x_given = x_given.to(device, torch.float32).expand(num_rows, num_numeric)
    tokens = torch.full((num_rows, num_categorical), mask_id, dtype=torch.long, device=device)
    if given_tokens is not None:
        tokens = given_tokens.to(device).expand(num_rows, num_categorical).clone()
    sigmas = karras(steps, sigma_min, sigma_max, rho=rho)
    x = draw(torch.randn, (num_rows, num_numeric), generator=generator, device=device) * sigmas[0].item()
    state = {"tokens": tokens, "logits": None}
    groups = _column_groups(denoiser, num_categorical, device)
    layout = hasattr(getattr(denoiser, "net", None), "column_groups")  # the net takes logits="flat" / None
    given_as_float = given_num.to(x.dtype)

    def numeric_denoiser(x: Tensor, sigma: Tensor) -> Tensor:
        first = state["logits"] is None  # the step's first call, at sigma_i: the logits of p(x0 | x_t(sigma_i))
        x0_hat, logits = denoiser(x, sigma, tokens=state["tokens"], given=given_as_float, x_given=x_given,
                                  **({"logits": "flat" if first and num_categorical else None} if layout else {}))
        if first:
            state["logits"] = logits
        return torch.where(given_num, x_given, x0_hat)

    def unmask(info: dict) -> None:
        t, s = (process.mask_time(info[key]).item() for key in ("sigma", "sigma_next"))
        if num_categorical and groups is None:  # a network without the flat layout: padded logits
            state["tokens"] = unmask_step(state["logits"], state["tokens"], t=t, s=s,
                                          schedule=process.mask_schedule, mask_id=mask_id, generator=generator)
        elif num_categorical:
            tokens = state["tokens"].clone()
            for columns, index in groups:  # one draw per vocabulary size, over exactly those columns' logits
                logits = state["logits"].index_select(1, index).view(num_rows, len(columns), -1)
                tokens[:, columns] = unmask_step(logits, state["tokens"][:, columns], t=t, s=s,
                                                 schedule=process.mask_schedule, mask_id=mask_id,
                                                 generator=generator)
            state["tokens"] = tokens
        state["logits"] = None
        if on_step is not None:
            on_step()

    x = get_sampler(sampler)(numeric_denoiser, x, sigmas, callback=unmask, generator=generator)
    if math.isnan(x.sum().item()):
        raise FloatingPointError("sampling produced NaN values; the model may be undertrained or corrupt")
    return x, state["tokens"]


def _column_groups(denoiser: nn.Module, num_categorical: int, device) -> list[tuple[Tensor, Tensor]] | None:
    """``[(columns, flat-logit index)]`` per vocabulary size when the denoiser's net has the flat layout, else None."""
    net = getattr(denoiser, "net", None)
    if not num_categorical or not hasattr(net, "column_groups"):
        return None
    return [(torch.tensor(columns, device=device), net.flat_index(columns, size).to(device))
            for size, columns in net.column_groups()]
