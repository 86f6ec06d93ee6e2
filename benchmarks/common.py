"""Shared helpers of the benchmarks: machine description, tables, distribution distances, the digits classifier.

Only torch and numpy are imported at module level, so every peer environment (diffusers, denoising-diffusion-pytorch)
can import this file; noisecraft and diffusers are imported inside the functions that need them.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"          # gitignored: raw JSON, samples, large plots
RESULTS_DIR = BENCH_DIR / "results"  # committed: small PNGs referenced from RESULTS.md


# ------------------------------------------------------------------------------------------------ machine + tables


def machine_info() -> dict:
    """Date, CPU model, core count, torch version and load average (a load well above 0 means a shared machine)."""
    cpu_model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    load_1min = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_avg_1min": round(load_1min, 2),
        "python": platform.python_version(),
    }


def markdown_table(rows: Sequence[dict], columns: Sequence[str], float_format: str = "{:.4g}") -> str:
    """A GitHub markdown table of `rows` (dicts) restricted to `columns`; floats printed with `float_format`."""

    def cell(value) -> str:
        if isinstance(value, float):
            return "n/a" if math.isnan(value) else float_format.format(value)
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_json(data: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=float))
    return path


class CallTimer:
    """Wraps a callable and accumulates the wall time spent inside it (and the number of calls).

    Used to split a sampler's time into "inside the network" and "everything else" (the sampler's overhead).
    """

    def __init__(self, fn: Callable):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


# ------------------------------------------------------------------------------------------ distribution distances


def sliced_wasserstein(a: Tensor, b: Tensor, *, num_projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance (Rabin et al. 2011) between two point clouds `[N, D]` of equal size N.

    SW2^2 = E_theta W2^2(theta.a, theta.b) over random unit directions theta; in 1-D, W2 pairs sorted values.
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"need two point clouds of equal shape [N, D]; got {tuple(a.shape)} and {tuple(b.shape)}.")
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(a.shape[1], num_projections, generator=generator, dtype=torch.float64)
    directions = directions / directions.norm(dim=0, keepdim=True)
    projected_a = (a.double() @ directions).sort(dim=0).values
    projected_b = (b.double() @ directions).sort(dim=0).values
    return float(((projected_a - projected_b) ** 2).mean().sqrt())


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, the FID formula):

        ||mu_a - mu_b||^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2).

    The trace of the matrix square root is taken from the eigenvalues of the symmetric C_a^1/2 C_b C_a^1/2,
    which is stable where a general sqrtm of C_a C_b is not.
    """
    features_a, features_b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    mu_a, mu_b = features_a.mean(0), features_b.mean(0)
    cov_a, cov_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    eigvals_a, eigvecs_a = np.linalg.eigh(cov_a)
    sqrt_a = (eigvecs_a * np.sqrt(eigvals_a.clip(min=0))) @ eigvecs_a.T
    cross_eigvals = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
    trace_sqrt = np.sqrt(cross_eigvals.clip(min=0)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


# -------------------------------------------------------------------------------------------- digits classifier


class DigitsClassifier(nn.Module):
    """A small CNN for 16x16 grey digits in [-1, 1]; `features` is the 64-d penultimate layer used for the FD."""

    def __init__(self, feature_dim: int = 64):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),   # 8x8
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),   # 4x4
            nn.Flatten(), nn.Linear(64 * 4 * 4, feature_dim), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(feature_dim, 10)

    def features(self, images: Tensor) -> Tensor:
        return self.body(images)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images))


def _random_shift(images: Tensor, generator: torch.Generator, max_shift: int = 1) -> Tensor:
    """Translate each image by up to `max_shift` pixels (background -1 fills in) so the classifier is not brittle."""
    padded = nn.functional.pad(images, [max_shift] * 4, value=-1.0)
    size = images.shape[-1]
    offsets = torch.randint(0, 2 * max_shift + 1, (images.shape[0], 2), generator=generator)
    return torch.stack([padded[i, :, dy : dy + size, dx : dx + size] for i, (dy, dx) in enumerate(offsets.tolist())])


def train_digits_classifier(
    train_images: Tensor, train_labels: Tensor, *, epochs: int = 20, batch_size: int = 64, seed: int = 0
) -> DigitsClassifier:
    """Train `DigitsClassifier` on `[N, 1, 16, 16]` images in [-1, 1] with Adam; deterministic given `seed`."""
    if train_images.ndim != 4 or train_images.shape[1:] != (1, 16, 16):
        raise ValueError(f"expected grey 16x16 images [N, 1, 16, 16]; got {tuple(train_images.shape)}.")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = DigitsClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        order = torch.randperm(len(train_images), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            images = _random_shift(train_images[index], generator)
            loss = nn.functional.cross_entropy(model(images), train_labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval().requires_grad_(False)


@torch.no_grad()
def classifier_outputs(model: DigitsClassifier, images: Tensor, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, 64], predicted digit [N]) for images in [-1, 1] (clamped first, as a saved PNG would be)."""
    features = torch.cat([model.features(chunk.clamp(-1, 1).float()) for chunk in images.split(batch_size)])
    predictions = model.head(features).argmax(dim=1)
    return features.numpy(), predictions.numpy()


# ------------------------------------------------------------------------------------- driving diffusers' schedulers

# DDPM's linear beta table (Ho et al. 2020, sec. 4), the one every diffusers scheduler here is built on.
DDPM_TABLE = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)


def diffusers_scheduler(class_name: str, **config):
    """A diffusers scheduler `class_name` on the DDPM linear table, epsilon prediction, no clipping/thresholding."""
    import diffusers  # local: only the diffusers environment has it

    if not hasattr(diffusers, class_name):
        raise ValueError(f"diffusers {diffusers.__version__} has no scheduler {class_name!r}.")
    if class_name == "DDIMScheduler":
        config = {"clip_sample": False, "set_alpha_to_one": True} | config  # data are not confined to [-1, 1]
    return getattr(diffusers, class_name)(**DDPM_TABLE, prediction_type="epsilon", **config)


def scheduler_nfe(scheduler, steps: int) -> int:
    """Model calls of one diffusers sampling loop with `steps` inference steps (one call per entry of timesteps)."""
    scheduler.set_timesteps(steps)
    return len(scheduler.timesteps)


def _scheduler_sigma_of_t(scheduler) -> Callable[[Tensor], float]:
    """The noise level (EDM sigma) the scheduler assigns to its timestep t, after `set_timesteps`.

    Schedulers that keep a `sigmas` array (Euler, Heun, DPM-Solver, UniPC) pair it with `timesteps`, which also
    covers Karras sigmas between table entries; DDIM has only the table: sigma_t = sqrt((1 - abar_t) / abar_t).
    """
    timesteps = [float(t) for t in scheduler.timesteps]
    if hasattr(scheduler, "sigmas") and len(scheduler.sigmas) >= len(timesteps):
        table = dict(zip(timesteps, [float(s) for s in scheduler.sigmas[: len(timesteps)]]))
        return lambda t: table[float(t)]
    alphas_cumprod = scheduler.alphas_cumprod.double()
    return lambda t: float(((1 - alphas_cumprod[int(t)]) / alphas_cumprod[int(t)]).sqrt())


def eps_model_from_denoiser(denoiser: Callable, scheduler) -> Callable[[Tensor, Tensor], Tensor]:
    """Turn a sigma-space denoiser D(x_sigma, sigma) into the epsilon model diffusers expects, eps(x_t, t).

    diffusers hands the model the VP-scaled x_t = (x0 + sigma eps) / sqrt(1 + sigma^2) (Euler and Heun get it via
    `scale_model_input`), so x_sigma = x_t sqrt(1 + sigma^2) and eps = (x_sigma - D(x_sigma, sigma)) / sigma
    (Karras et al. 2022, Table 1 and eq. 3). Call after `set_timesteps`.
    """
    sigma_of_t = _scheduler_sigma_of_t(scheduler)

    def eps_model(x_t: Tensor, t: Tensor) -> Tensor:
        sigma = sigma_of_t(t)
        x_sigma = x_t * math.sqrt(1 + sigma**2)
        return (x_sigma - denoiser(x_sigma, torch.full((x_t.shape[0],), sigma, dtype=x_t.dtype))) / sigma

    return eps_model


def diffusers_sample(
    scheduler,
    denoiser: Callable,
    noise: Tensor,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    step_options: dict | None = None,
    network_timer: list | None = None,
    start_like_noisecraft: bool = False,
) -> Tensor:
    """diffusers' own sampling loop (as in its pipelines): set_timesteps, scale_model_input, model, step.

    `noise` z is standard normal. diffusers starts from z * init_noise_sigma, which for the VP schedulers is
    x_sigma = z sqrt(1 + sigma_max^2) rather than noisecraft's z sigma_max (a relative difference of
    1 / (2 sigma_max^2) ~ 2e-5 on the DDPM table that still moves the final samples by ~1e-4). With
    `start_like_noisecraft` the loop starts from x_sigma = z sigma_max instead, so accuracy comparisons see the same
    starting point. The result is in data space (x0). With `network_timer` (an empty list) the eps model is wrapped
    in a `CallTimer`, appended to it for the caller.
    """
    import inspect

    scheduler.set_timesteps(steps)
    eps_model = eps_model_from_denoiser(denoiser, scheduler)
    if network_timer is not None:
        eps_model = CallTimer(eps_model)
        network_timer.append(eps_model)
    step_options = dict(step_options or {})
    if "generator" in inspect.signature(scheduler.step).parameters:
        step_options["generator"] = generator
    x = noise * scheduler.init_noise_sigma
    if start_like_noisecraft:
        t_start = scheduler.timesteps[0]
        sigma_start = _scheduler_sigma_of_t(scheduler)(t_start)
        to_model_input = float(scheduler.scale_model_input(torch.ones(()), t_start))  # scheduler space -> VP x_t
        x = noise * (sigma_start / math.sqrt(1 + sigma_start**2) / to_model_input)
    for t in scheduler.timesteps:
        eps = eps_model(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(eps, t, x, **step_options).prev_sample
    return x
