"""Benchmark 1: sampler accuracy vs NFE on an exact Gaussian-mixture denoiser, noisecraft vs diffusers.

The data distribution is a Gaussian mixture (noisecraft.diffusion.gmm), so the ideal denoiser
D(x, sigma) = E[x0 | x0 + sigma eps = x] is known in closed form and every sampler's error is pure discretization
error. Every method starts from the same standard-normal noise z and is given an NFE budget (5, 10, 20, 50 calls);
its steps are the most that fit the budget. Two errors:

* ODE samplers: RMSE per coordinate to a 1000-step Heun solve of the probability-flow ODE (Karras et al. 2022,
  eq. 1) from the same z, over the same sigma range [sigma_min, sigma_max] of DDPM's linear table.
* all samplers (ODE and SDE): sliced Wasserstein-2 distance to fresh samples of the true mixture.

diffusers' schedulers are driven through their real set_timesteps / scale_model_input / step API with the same
denoiser converted to an epsilon model (common.eps_model_from_denoiser). Before measuring, the conversion is checked:
diffusers' DDIM, Euler and DPM-Solver++(2M) on their own sigmas must match noisecraft's ddim / euler / dpmpp_2m on
those sigmas, and 1000-step DDIM must land next to the reference.

Run in the diffusers environment (bash benchmarks/setup_peers.sh diffusers):
    benchmarks/.venv-diffusers/bin/python benchmarks/sampler_accuracy.py
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from common import (
    OUT_DIR, RESULTS_DIR, CallTimer, diffusers_sample, diffusers_scheduler, machine_info, markdown_table,
    scheduler_nfe, sliced_wasserstein, write_json,
)  # fmt: skip
from noisecraft.diffusion.gmm import GaussianMixture, random_mixture
from noisecraft.diffusion.samplers import get_sampler, nfe, sample_ddim, sample_dpmpp_2m, sample_euler, sample_heun
from noisecraft.diffusion.schedules import get_schedule, karras
from noisecraft.diffusion.vp import VPSchedule

NFE_BUDGETS = (5, 10, 20, 50)


@dataclass
class Method:
    """One sampler configuration: `run(noise, budget) -> (samples, nfe)` or None when no step count fits."""

    library: str
    label: str
    stochastic: bool
    run: Callable[[Tensor, int], tuple[Tensor, int] | None]
    results: dict = field(default_factory=dict)


def make_mixture(dim: int, num_components: int, seed: int) -> GaussianMixture:
    """A random full-covariance mixture rescaled to unit average variance per coordinate (data scale ~1)."""
    raw = random_mixture(dim, num_components, generator=torch.Generator().manual_seed(seed))
    scale = raw.covariance.diagonal().mean().sqrt()
    return GaussianMixture(raw.means / scale, raw.covs / scale**2, raw.weights)


def steps_for_budget(nfe_of_steps: Callable[[int], int], budget: int, max_steps: int = 1000) -> int | None:
    """The most steps n whose NFE fits the budget (NFE grows with n), or None if even one step is too many."""
    best = None
    for steps in range(1, max_steps + 1):
        if nfe_of_steps(steps) > budget:
            break
        best = steps
    return best


def rmse(x: Tensor, reference: Tensor) -> float:
    """Root mean square error per coordinate, averaged over samples and dimensions."""
    return float((x - reference).pow(2).mean().sqrt())


# ----------------------------------------------------------------------------------------------- the two libraries


def noisecraft_method(denoiser, sampler: str, schedule: str, sigma_range: tuple[float, float], *, seed: int,
                      label: str | None = None, stochastic: bool = False, **options) -> Method:
    """noisecraft's `sampler` on `schedule(steps, sigma_min, sigma_max)`; noise scaled by sigmas[0]."""
    sample_fn, schedule_fn = get_sampler(sampler), get_schedule(schedule)

    def run(noise: Tensor, budget: int):
        steps = steps_for_budget(lambda n: nfe(sampler, n), budget)
        if steps is None:
            return None
        sigmas = schedule_fn(steps, *sigma_range)
        counted = CallTimer(denoiser)
        x = sample_fn(counted, noise * sigmas[0], sigmas, generator=torch.Generator().manual_seed(seed), **options)
        return x, counted.calls

    return Method("noisecraft", f"{label or sampler} / {schedule}", stochastic, run)


def diffusers_method(denoiser, label: str, class_name: str, *, seed: int, stochastic: bool = False,
                     step_options: dict | None = None, **config) -> Method:
    """diffusers' `class_name` scheduler (DDPM linear table) in its own sampling loop."""

    def run(noise: Tensor, budget: int):
        scheduler = diffusers_scheduler(class_name, **config)
        steps = steps_for_budget(lambda n: scheduler_nfe(scheduler, n), budget)
        if steps is None:
            return None
        counted = CallTimer(denoiser)
        x = diffusers_sample(scheduler, counted, noise, steps, generator=torch.Generator().manual_seed(seed),
                             step_options=step_options, start_like_noisecraft=True)
        return x, counted.calls

    return Method("diffusers", label, stochastic, run)


def all_methods(denoiser, sigma_range: tuple[float, float], seed: int) -> list[Method]:
    ours = []
    # "discrete" is noisecraft's DDPM-table schedule with trailing spacing, i.e. diffusers' trailing timesteps.
    for schedule in ("karras", "exponential", "vp", "discrete"):
        common = dict(sigma_range=sigma_range, seed=seed, schedule=schedule)
        ours += [noisecraft_method(denoiser, name, **common) for name in
                 ("euler", "heun", "dpm_2", "lms", "dpmpp_2m", "unipc")]
        ours += [
            noisecraft_method(denoiser, "dpmpp_3m_sde", label="dpmpp_3m (eta=0)", eta=0.0, **common),
            noisecraft_method(denoiser, "unipc", label="unipc (order 3)", order=3, **common),
        ]
        ours += [noisecraft_method(denoiser, name, stochastic=True, **common) for name in
                 ("euler_ancestral", "dpmpp_2m_sde", "dpmpp_3m_sde")]
    theirs = []
    for spacing in ("linspace", "trailing"):
        theirs += [
            diffusers_method(denoiser, f"DDIM ({spacing})", "DDIMScheduler", seed=seed, timestep_spacing=spacing),
            diffusers_method(denoiser, f"Euler ({spacing})", "EulerDiscreteScheduler", seed=seed,
                             timestep_spacing=spacing),
            diffusers_method(denoiser, f"Heun ({spacing})", "HeunDiscreteScheduler", seed=seed,
                             timestep_spacing=spacing),
            diffusers_method(denoiser, f"DPM++2M ({spacing})", "DPMSolverMultistepScheduler", seed=seed,
                             timestep_spacing=spacing),
            diffusers_method(denoiser, f"UniPC bh2 ({spacing})", "UniPCMultistepScheduler", seed=seed,
                             timestep_spacing=spacing),
            diffusers_method(denoiser, f"DDIM eta=1 ({spacing})", "DDIMScheduler", seed=seed, stochastic=True,
                             step_options={"eta": 1.0}, timestep_spacing=spacing),
            diffusers_method(denoiser, f"Euler a ({spacing})", "EulerAncestralDiscreteScheduler", seed=seed,
                             stochastic=True, timestep_spacing=spacing),
            diffusers_method(denoiser, f"DPM++2M SDE ({spacing})", "DPMSolverMultistepScheduler", seed=seed,
                             stochastic=True, algorithm_type="sde-dpmsolver++", timestep_spacing=spacing),
        ]
    theirs += [
        diffusers_method(denoiser, "Euler (karras)", "EulerDiscreteScheduler", seed=seed, use_karras_sigmas=True),
        diffusers_method(denoiser, "Heun (karras)", "HeunDiscreteScheduler", seed=seed, use_karras_sigmas=True),
        diffusers_method(denoiser, "DPM++2M (karras)", "DPMSolverMultistepScheduler", seed=seed,
                         use_karras_sigmas=True),
        diffusers_method(denoiser, "UniPC bh2 (karras)", "UniPCMultistepScheduler", seed=seed,
                         use_karras_sigmas=True),
        diffusers_method(denoiser, "DPM++2M SDE (karras)", "DPMSolverMultistepScheduler", seed=seed,
                         stochastic=True, algorithm_type="sde-dpmsolver++", use_karras_sigmas=True),
    ]
    return ours + theirs


# --------------------------------------------------------------------------------------------- conversion checks


def conversion_checks(denoiser, noise: Tensor, reference: Tensor) -> dict[str, float]:
    """RMSE between diffusers' loop and noisecraft on the very same sigmas (should be ~float32 round-off),
    and between 1000-step DDIM and the reference (small: 1000 first-order steps)."""
    checks = {}
    pairs = [("DDIMScheduler", {"timestep_spacing": "trailing"}, sample_ddim),
             ("EulerDiscreteScheduler", {}, sample_euler),
             ("DPMSolverMultistepScheduler", {}, sample_dpmpp_2m)]
    for class_name, config, ours in pairs:
        scheduler = diffusers_scheduler(class_name, **config)
        theirs = diffusers_sample(scheduler, denoiser, noise, 10, start_like_noisecraft=True)
        if hasattr(scheduler, "sigmas"):
            sigmas = scheduler.sigmas.double()
        else:  # DDIM: the table's sigmas at its timesteps, then 0 (set_alpha_to_one)
            table = VPSchedule.linear()
            sigmas = torch.cat([table.sigmas[scheduler.timesteps.long()], torch.zeros(1, dtype=torch.float64)])
        checks[f"{class_name} vs noisecraft on the same 10 sigmas"] = rmse(theirs, ours(denoiser, noise * sigmas[0],
                                                                                        sigmas))
    ddim_1000 = diffusers_sample(diffusers_scheduler("DDIMScheduler", timestep_spacing="trailing"), denoiser, noise,
                                 1000, start_like_noisecraft=True)
    checks["DDIMScheduler 1000 steps vs reference"] = rmse(ddim_1000, reference)
    return checks


# ----------------------------------------------------------------------------------------------------- reporting


def best_ratio(methods: list[Method], budget: int, metric: str, stochastic: bool | None) -> dict:
    """Our best / diffusers' best value of `metric` at `budget` (restricted to ODE methods if stochastic=False)."""
    best = {}
    for library in ("noisecraft", "diffusers"):
        candidates = [(m.results[budget][metric], m.label) for m in methods
                      if m.library == library and budget in m.results and
                      (stochastic is None or m.stochastic == stochastic)]
        best[library] = min(candidates) if candidates else (math.nan, "-")
    return {"nfe": budget, "metric": metric, "ours": best["noisecraft"][0], "ours_method": best["noisecraft"][1],
            "diffusers": best["diffusers"][0], "diffusers_method": best["diffusers"][1],
            "ratio": best["noisecraft"][0] / best["diffusers"][0]}


def save_plot(methods: list[Method], path, floor: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric, title in ((axes[0], "rmse", "ODE: RMSE to reference"), (axes[1], "sw", "all: sliced W2 to data")):
        for library, style in (("noisecraft", "-"), ("diffusers", "--")):
            # Best configuration of each sampler family per budget, so the plot stays readable.
            families: dict[str, dict[int, float]] = {}
            for m in methods:
                if m.library != library or (metric == "rmse" and m.stochastic):
                    continue
                family = m.label.split(" / ")[0] if library == "noisecraft" else m.label.split(" (")[0]
                for budget, result in m.results.items():
                    families.setdefault(family, {})
                    families[family][budget] = min(families[family].get(budget, math.inf), result[metric])
            for family, curve in sorted(families.items()):
                budgets = sorted(curve)
                ax.loglog([m_ for m_ in budgets], [curve[b] for b in budgets], style, marker="o", markersize=3,
                          label=f"{library}: {family}", linewidth=1)
        if metric == "sw":
            ax.axhline(floor, color="grey", linewidth=0.8, linestyle=":", label="sampling floor")
        ax.set_xlabel("NFE")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=16, help="data dimension of the Gaussian mixture")
    parser.add_argument("--components", type=int, default=8, help="number of mixture components")
    parser.add_argument("--num-samples", type=int, default=2048, help="samples per method (same noise for all)")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(NFE_BUDGETS), help="NFE budgets")
    parser.add_argument("--reference-steps", type=int, default=1000, help="Heun steps of the reference solve")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (accuracy, not speed, is measured)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # small batched ops: more threads only contend on a shared machine

    mixture = make_mixture(args.dim, args.components, args.seed)
    denoiser = mixture.denoiser
    table = VPSchedule.linear()
    sigma_range = (table.sigma_min, table.sigma_max)
    noise = torch.randn(args.num_samples, args.dim, generator=torch.Generator().manual_seed(args.seed + 1),
                        dtype=torch.float64)
    data = mixture.sample(args.num_samples, generator=torch.Generator().manual_seed(args.seed + 2))
    floor = sliced_wasserstein(mixture.sample(args.num_samples, generator=torch.Generator().manual_seed(args.seed + 3)),
                               data)

    start = time.perf_counter()
    reference_sigmas = karras(args.reference_steps, *sigma_range)
    reference = sample_heun(denoiser, noise * reference_sigmas[0], reference_sigmas)
    half_sigmas = karras(args.reference_steps // 2, *sigma_range)
    reference_error = rmse(sample_heun(denoiser, noise * half_sigmas[0], half_sigmas), reference)
    checks = conversion_checks(denoiser, noise, reference)
    print(f"reference: Heun {args.reference_steps} steps (karras), RMSE vs {args.reference_steps // 2} steps: "
          f"{reference_error:.2e}; SW2 floor (two true sample sets): {floor:.4f}")
    for name, value in checks.items():
        print(f"check  {name}: RMSE {value:.2e}")
    if max(v for k, v in checks.items() if "same" in k) > 1e-4:
        raise SystemExit("conversion check failed: diffusers and noisecraft disagree on identical sigmas")

    methods = all_methods(denoiser, sigma_range, args.seed)
    for method in methods:
        for budget in args.budgets:
            out = method.run(noise, budget)
            if out is None:
                continue
            x, used = out
            method.results[budget] = {"nfe": used, "rmse": math.nan if method.stochastic else rmse(x, reference),
                                      "sw": sliced_wasserstein(x, data)}
    elapsed = time.perf_counter() - start

    rows = {budget: [] for budget in args.budgets}
    for m in methods:
        for budget, result in m.results.items():
            rows[budget].append({"library": m.library, "method": m.label, "kind": "SDE" if m.stochastic else "ODE",
                                 "NFE": result["nfe"], "RMSE vs ref": result["rmse"], "SW2 vs data": result["sw"]})
    summary = [best_ratio(methods, budget, "rmse", stochastic=False) for budget in args.budgets]
    summary += [best_ratio(methods, budget, "sw", stochastic=None) for budget in args.budgets]

    info = machine_info()
    lines = [f"machine: {info}", f"mixture: dim {args.dim}, {args.components} components, {args.num_samples} samples, "
             f"sigma range [{sigma_range[0]:.4f}, {sigma_range[1]:.2f}] (DDPM linear table); "
             f"reference self-error {reference_error:.1e}; SW2 floor {floor:.4f}; {elapsed:.0f} s"]
    lines += [f"check: {k}: {v:.2e}" for k, v in checks.items()]
    for budget in args.budgets:
        ordered = sorted(rows[budget], key=lambda r: (r["kind"], r["RMSE vs ref"] if r["kind"] == "ODE" else r["SW2 vs data"]))
        lines += ["", f"### NFE <= {budget}", "",
                  markdown_table(ordered, ["library", "method", "kind", "NFE", "RMSE vs ref", "SW2 vs data"])]
    lines += ["", "### Summary: our best / diffusers' best", "",
              markdown_table(summary, ["nfe", "metric", "ours", "ours_method", "diffusers", "diffusers_method", "ratio"])]
    report = "\n".join(lines)
    print(report)
    (OUT_DIR / "sampler_accuracy.md").parent.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "sampler_accuracy.md").write_text(report + "\n")
    write_json({"machine": info, "args": vars(args), "checks": checks, "reference_error": reference_error,
                "floor": floor, "rows": rows, "summary": summary}, OUT_DIR / "sampler_accuracy.json")
    save_plot(methods, RESULTS_DIR / "sampler_accuracy.png", floor)


if __name__ == "__main__":
    main()
