"""Benchmark 2: sampling throughput and sampler overhead at 20 NFE, noisecraft vs diffusers' scheduler loop.

The network is the digits model's shape: the "small" U-Net preset on 16x16 grey images, class-conditional, behind
EDM preconditioning (an untrained network costs the same as a trained one). Both libraries call the very same
denoiser; noisecraft through its samplers, diffusers through its own set_timesteps / scale_model_input / step loop
(common.diffusers_sample, with the sigma-space denoiser wrapped as the epsilon model diffusers expects).

For every sampler: images/s for a batch of 64, and the overhead = share of the wall time spent outside the network
calls (timed by wrapping the denoiser; for diffusers the epsilon conversion counts as network time, in its favour).
The two loops of a pair alternate over `--repeats` rounds after one warm-up run each; medians are reported.

Run in the diffusers environment (bash benchmarks/setup_peers.sh diffusers):
    benchmarks/.venv-diffusers/bin/python benchmarks/sampling_overhead.py
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from common import OUT_DIR, CallTimer, diffusers_sample, diffusers_scheduler, machine_info, markdown_table, write_json
from noisecraft.diffusion.precond import EDMPrecond
from noisecraft.diffusion.samplers import get_sampler, nfe
from noisecraft.diffusion.schedules import karras
from noisecraft.nets.unet import UNet2D, unet_config

# (noisecraft sampler, diffusers scheduler class) pairs that implement the same method.
PAIRS = {
    "euler": "EulerDiscreteScheduler",
    "ddim": "DDIMScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "heun": "HeunDiscreteScheduler",
}


def digits_denoiser(batch_size: int, seed: int = 0):
    """Untrained class-conditional small U-Net (16x16x1) behind EDM preconditioning, labels bound."""
    torch.manual_seed(seed)
    net = UNet2D(unet_config("small", in_channels=1, resolution=16, num_classes=10))
    model = EDMPrecond(net).eval().requires_grad_(False)
    labels = torch.arange(batch_size) % 10
    return functools.partial(model, class_labels=labels)


def steps_for_nfe(nfe_of_steps, budget: int) -> int:
    """Most steps whose NFE fits the budget (Heun's 2n - 1 cannot hit an even budget exactly)."""
    steps = 1
    while nfe_of_steps(steps + 1) <= budget:
        steps += 1
    return steps


def time_interleaved(runs: dict, repeats: int) -> dict:
    """Median wall time, network time and NFE of each `run()` (which returns its CallTimer) over `repeats` rounds.

    The runs alternate within each round, so load from other processes on a shared machine hits all of them alike.
    """
    for run in runs.values():
        run()  # warm-up: allocator, lazy init
    samples = {name: ([], []) for name in runs}
    calls = {}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            timer = run()
            samples[name][0].append(time.perf_counter() - start)
            samples[name][1].append(timer.seconds)
            calls[name] = timer.calls
    results = {}
    for name, (totals, insides) in samples.items():
        # Overhead per round first, then the median: a round's own network time is its fair baseline.
        overheads = [(total - inside) / total for total, inside in zip(totals, insides)]
        results[name] = {"seconds": statistics.median(totals), "network_seconds": statistics.median(insides),
                         "nfe": calls[name], "overhead": statistics.median(overheads)}
    return results


def noisecraft_run(denoiser, sampler: str, noise, budget: int, sigma_range):
    steps = steps_for_nfe(lambda n: nfe(sampler, n), budget)
    sigmas = karras(steps, *sigma_range)

    def run():
        timer = CallTimer(denoiser)
        get_sampler(sampler)(timer, noise * sigmas[0], sigmas, generator=torch.Generator().manual_seed(0))
        return timer

    return run


def diffusers_run(denoiser, class_name: str, noise, budget: int):
    scheduler = diffusers_scheduler(class_name, timestep_spacing="trailing")

    def nfe_of_steps(n):
        scheduler.set_timesteps(n)
        return len(scheduler.timesteps)

    steps = steps_for_nfe(nfe_of_steps, budget)

    def run():
        timers = []
        diffusers_sample(scheduler, denoiser, noise, steps, network_timer=timers)
        return timers[0]

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--nfe", type=int, default=20, help="denoiser calls per sample")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per sampler (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    denoiser = digits_denoiser(args.batch_size)
    noise = torch.randn(args.batch_size, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    sigma_range = (0.002, 80.0)  # EDM's range; the diffusers loop uses the DDPM table (same cost per call)
    rows = []
    for sampler, class_name in PAIRS.items():
        timed = time_interleaved({"ours": noisecraft_run(denoiser, sampler, noise, args.nfe, sigma_range),
                                  "theirs": diffusers_run(denoiser, class_name, noise, args.nfe)}, args.repeats)
        ours, theirs = timed["ours"], timed["theirs"]
        for library, name, result in (("noisecraft", sampler, ours), ("diffusers", class_name, theirs)):
            rows.append({"library": library, "sampler": name, "NFE": result["nfe"],
                         "images/s": args.batch_size / result["seconds"], "total s": result["seconds"],
                         "network s": result["network_seconds"], "overhead %": 100 * result["overhead"]})
        rows[-2]["ours/diffusers images/s"] = theirs["seconds"] / ours["seconds"]
        print(rows[-2], rows[-1], flush=True)

    info = machine_info()
    table = markdown_table(rows, ["library", "sampler", "NFE", "images/s", "total s", "network s", "overhead %",
                                  "ours/diffusers images/s"], float_format="{:.3g}")
    report = f"machine: {info}\nbatch {args.batch_size}, {args.nfe} NFE, {args.threads} thread(s), median of " \
             f"{args.repeats}\n\n{table}"
    print(report)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "sampling_overhead.md").write_text(report + "\n")
    write_json({"machine": info, "args": vars(args), "rows": rows}, OUT_DIR / "sampling_overhead.json")


if __name__ == "__main__":
    main()
