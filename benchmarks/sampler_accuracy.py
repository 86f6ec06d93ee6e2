"""Benchmark 1: sampler accuracy vs NFE on an exact Gaussian-mixture denoiser, noisecraft vs diffusers.

The data distribution is a Gaussian mixture (noisecraft.diffusion.gmm), so the ideal denoiser
D(x, sigma) = E[x0 | x0 + sigma eps = x] is known in closed form and every sampler's error is pure discretization
error. Every method starts from the same standard-normal noise z and is given an NFE budget (5, 10, 20, 50 calls);
its steps are the most that fit the budget. Two errors:

* ODE samplers: RMSE per coordinate to a 1000-step Heun solve of the probability-flow ODE (Karras et al. 2022,
  eq. 1) from the same z, over the same sigma range [sigma_min, sigma_max] of DDPM's linear table.
* all samplers (ODE and SDE): sliced Wasserstein-2 distance to fresh samples of the true mixture.

noisecraft runs every sampler on four schedules (karras, exponential, vp and discrete = the DDPM table's own
timesteps with trailing spacing); diffusers runs every scheduler with linspace and trailing timesteps and, where
offered, Karras sigmas. The best configuration of each library per budget is compared.

diffusers' schedulers are driven through their real set_timesteps / scale_model_input / step API with the same
denoiser converted to an epsilon model (common.eps_model_from_denoiser). Before measuring, the conversion is checked:
diffusers' DDIM, Euler and DPM-Solver++(2M) on their own sigmas must match noisecraft's ddim / euler / dpmpp_2m on
those sigmas, and 1000-step DDIM must land next to the reference.

Run in the diffusers environment (bash benchmarks/setup_peers.sh diffusers):
    benchmarks/.venv-diffusers/bin/python benchmarks/sampler_accuracy.py
"""

from __future__ import annotations

import argparse
import json
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
    # diffusers: every scheduler on both timestep spacings that start at the top of the table, plus Karras sigmas
    # where the scheduler offers them. (label, class, config, step options, stochastic, has Karras sigmas)
    variants = [
        ("DDIM", "DDIMScheduler", {}, {}, False, False),
        ("Euler", "EulerDiscreteScheduler", {}, {}, False, True),
        ("Heun", "HeunDiscreteScheduler", {}, {}, False, True),
        ("LMS", "LMSDiscreteScheduler", {}, {}, False, True),
        ("DPM++2M", "DPMSolverMultistepScheduler", {}, {}, False, True),
        ("DPM++3M", "DPMSolverMultistepScheduler", {"solver_order": 3}, {}, False, True),
        ("UniPC bh2", "UniPCMultistepScheduler", {}, {}, False, True),
        ("UniPC bh2 order 3", "UniPCMultistepScheduler", {"solver_order": 3}, {}, False, True),
        ("DDIM eta=1", "DDIMScheduler", {}, {"eta": 1.0}, True, False),
        ("Euler a", "EulerAncestralDiscreteScheduler", {}, {}, True, False),
        ("DPM++2M SDE", "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, {}, True, True),
    ]
    theirs = []
    for label, class_name, config, step_options, stochastic, has_karras in variants:
        spacings = [("linspace", {"timestep_spacing": "linspace"}), ("trailing", {"timestep_spacing": "trailing"})]
        spacings += [("karras", {"use_karras_sigmas": True})] if has_karras else []
        theirs += [diffusers_method(denoiser, f"{label} ({name})", class_name, seed=seed, stochastic=stochastic,
                                    step_options=step_options, **config, **spacing) for name, spacing in spacings]
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


COLUMN = {"rmse": "RMSE vs ref", "sw": "SW2 vs data"}


def family(row: dict) -> str:
    """The sampler family of a result row: the noisecraft sampler or the diffusers scheduler, without the schedule."""
    return row["method"].split(" / ")[0] if row["library"] == "noisecraft" else row["method"].split(" (")[0]


def best_ratio(budget_rows: list[dict], budget: int, metric: str) -> dict:
    """Our best / diffusers' best value of `metric` among the rows of one budget (ODE rows only for the RMSE)."""
    best = {}
    for library in ("noisecraft", "diffusers"):
        candidates = [(row[COLUMN[metric]], row["method"]) for row in budget_rows
                      if row["library"] == library and not (metric == "rmse" and row["kind"] == "SDE")]
        best[library] = min(candidates) if candidates else (math.nan, "-")
    return {"nfe": budget, "metric": metric, "ours": best["noisecraft"][0], "ours_method": best["noisecraft"][1],
            "diffusers": best["diffusers"][0], "diffusers_method": best["diffusers"][1],
            "ratio": best["noisecraft"][0] / best["diffusers"][0]}


def family_table(budget_rows: list[dict]) -> list[dict]:
    """One row per (library, sampler family): its best configuration by RMSE (ODE) and by SW2."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for row in budget_rows:
        grouped.setdefault((row["library"], family(row)), []).append(row)
    table = []
    for (library, name), rows in grouped.items():
        by_sw = min(rows, key=lambda r: r[COLUMN["sw"]])
        by_rmse = min(rows, key=lambda r: r[COLUMN["rmse"]]) if rows[0]["kind"] == "ODE" else None
        table.append({"library": library, "sampler": name, "kind": rows[0]["kind"], "NFE": rows[0]["NFE"],
                      "best RMSE": by_rmse[COLUMN["rmse"]] if by_rmse else math.nan,
                      "config (RMSE)": by_rmse["method"] if by_rmse else "-",
                      "best SW2": by_sw[COLUMN["sw"]], "config (SW2)": by_sw["method"]})
    return sorted(table, key=lambda r: (r["kind"], r["best RMSE"] if r["kind"] == "ODE" else r["best SW2"]))


def write_report(saved: dict) -> str:
    """Markdown report (per-NFE family tables, the summary ratios, then every row) from the saved results."""
    rows, args = saved["rows"], saved["args"]
    lines = [f"machine: {saved['machine']}",
             f"mixture: dim {args['dim']}, {args['components']} components, {args['num_samples']} samples, sigma range "
             f"[{saved['sigma_range'][0]:.4f}, {saved['sigma_range'][1]:.2f}] (DDPM linear table); reference self-error "
             f"{saved['reference_error']:.1e}; SW2 floor {saved['floor']:.4f}; {saved['seconds']:.0f} s"]
    lines += [f"check: {k}: {v:.2e}" for k, v in saved["checks"].items()]
    summary = [best_ratio(rows[b], int(b), metric) for metric in ("rmse", "sw") for b in rows]
    lines += ["", "### Summary: our best / diffusers' best", "",
              markdown_table(summary, ["nfe", "metric", "ours", "ours_method", "diffusers", "diffusers_method",
                                       "ratio"])]
    for budget, budget_rows in rows.items():
        lines += ["", f"### NFE <= {budget}: best configuration per sampler", "",
                  markdown_table(family_table(budget_rows), ["library", "sampler", "kind", "NFE", "best RMSE",
                                                             "config (RMSE)", "best SW2", "config (SW2)"])]
    for budget, budget_rows in rows.items():
        ordered = sorted(budget_rows,
                         key=lambda r: (r["kind"], r[COLUMN["rmse"] if r["kind"] == "ODE" else COLUMN["sw"]]))
        lines += ["", f"### NFE <= {budget}: every configuration", "",
                  markdown_table(ordered, ["library", "method", "kind", "NFE", "RMSE vs ref", "SW2 vs data"])]
    return "\n".join(lines)


def save_plot(rows: dict, path, floor: float) -> None:
    """Log-log error vs NFE: for each sampler family its best configuration per budget (solid: noisecraft,
    dashed: diffusers); ODE RMSE on the left, sliced W2 of every sampler on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, metric, title in ((axes[0], "rmse", "ODE samplers: RMSE to reference"),
                              (axes[1], "sw", "all samplers: sliced W2 to data")):
        for library, style in (("noisecraft", "-"), ("diffusers", "--")):
            families: dict[str, dict[int, float]] = {}
            for budget, budget_rows in rows.items():
                for row in budget_rows:
                    if row["library"] != library or (metric == "rmse" and row["kind"] == "SDE"):
                        continue
                    curve = families.setdefault(family(row), {})
                    curve[int(budget)] = min(curve.get(int(budget), math.inf), row[COLUMN[metric]])
            colors = plt.get_cmap("tab10" if library == "noisecraft" else "Dark2")
            for k, (name, curve) in enumerate(sorted(families.items())):
                budgets = sorted(curve)
                ax.loglog(budgets, [curve[b] for b in budgets], style, marker="o", markersize=3, linewidth=1,
                          color=colors(k % colors.N), label=f"{library}: {name}")
        if metric == "sw":
            ax.axhline(floor, color="grey", linewidth=0.8, linestyle=":", label="floor (true vs true samples)")
        ax.set_xlabel("NFE")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=6.5)
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=64)
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
    parser.add_argument("--from-json", action="store_true", help="only rebuild report and plot from the last run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # small batched ops: more threads only contend on a shared machine
    if args.from_json:
        return publish(json.loads((OUT_DIR / "sampler_accuracy.json").read_text()))

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
    saved = {"machine": machine_info(), "args": vars(args), "checks": checks, "reference_error": reference_error,
             "floor": floor, "sigma_range": sigma_range, "seconds": elapsed, "rows": rows}
    write_json(saved, OUT_DIR / "sampler_accuracy.json")
    publish(json.loads((OUT_DIR / "sampler_accuracy.json").read_text()))  # the JSON round trip: same as --from-json


def publish(saved: dict) -> None:
    report = write_report(saved)
    print(report)
    (OUT_DIR / "sampler_accuracy.md").write_text(report + "\n")
    save_plot(saved["rows"], RESULTS_DIR / "sampler_accuracy.png", saved["floor"])

if __name__ == "__main__":
    main()
