"""One-shot GPU measurements (run on a lent H200; CI never runs this).

1. Sampling: images/s of noisecraft's `sample_dpmpp_2m` vs diffusers' `DPMSolverMultistepScheduler` loop driving the
   SAME DDPM-parameterized U-Net (base preset, 32x32 RGB), 20 NFE, batch 64 and 256, fp32 and bf16 autocast; and the
   share of wall time spent outside the network (1 - network-only time / sampler time).
2. Training: optimizer steps/s of the shared Trainer on the base U-Net, batch 128, fp32 vs bf16.

Usage: python benchmarks/gpu_bench.py --out DIR   (writes gpu_bench.json and prints a markdown table)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import nullcontext

import torch

from noisecraft.diffusion.config import DiffusionConfig
from noisecraft.diffusion.samplers import sample_dpmpp_2m
from noisecraft.nets.unet import UNet2D, unet_config
from noisecraft.training.trainer import TrainConfig, Trainer


DEVICE, PRESET = "cuda", "base"  # --smoke switches to CPU + tiny net to check the script itself


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int = 3) -> float:
    """Median wall time of fn() with CUDA synchronisation, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def sampling(batch: int, bf16: bool, steps: int = 20) -> dict:
    from diffusers import DPMSolverMultistepScheduler

    torch.manual_seed(0)
    config = DiffusionConfig.ddpm()
    net = UNet2D(unet_config(PRESET, in_channels=3, resolution=32)).to(DEVICE).eval()
    denoiser = config.make_denoiser(net)
    vp = config.vp
    autocast = torch.autocast(DEVICE, dtype=torch.bfloat16) if bf16 else nullcontext()
    noise = torch.randn(batch, 3, 32, 32, device=DEVICE, generator=torch.Generator(DEVICE).manual_seed(0))

    sigmas = config.sampling_sigmas(steps, schedule="discrete", spacing="linspace").to(DEVICE)

    @torch.no_grad()
    def ours():
        with autocast:
            return sample_dpmpp_2m(denoiser, noise * sigmas[0], sigmas)

    scheduler = DPMSolverMultistepScheduler(num_train_timesteps=vp.num_steps, beta_schedule="linear",
                                            beta_start=1e-4, beta_end=0.02, algorithm_type="dpmsolver++",
                                            solver_order=2, timestep_spacing="linspace")

    @torch.no_grad()
    def theirs():
        scheduler.set_timesteps(steps, device=DEVICE)
        x = noise * scheduler.init_noise_sigma
        with autocast:
            for t in scheduler.timesteps:
                eps = net(x, t.expand(batch).float())
                x = scheduler.step(eps, t, x).prev_sample
        return x

    t_batch = torch.full((batch,), 500.0, device=DEVICE)

    @torch.no_grad()
    def network_only():
        with autocast:
            for _ in range(steps):
                net(noise, t_batch)

    t_ours, t_theirs, t_net = timed(ours), timed(theirs), timed(network_only)
    return {"batch": batch, "bf16": bf16, "nfe": steps, "noisecraft_img_s": batch / t_ours,
            "diffusers_img_s": batch / t_theirs, "speedup": t_theirs / t_ours,
            "noisecraft_overhead": 1 - t_net / t_ours, "diffusers_overhead": 1 - t_net / t_theirs}


def training(bf16: bool, steps: int = 60, batch: int = 128) -> dict:
    if DEVICE == "cpu":
        steps, batch = 3, 4
    torch.manual_seed(0)
    config = DiffusionConfig.edm()
    model = config.make_denoiser(UNet2D(unet_config(PRESET, in_channels=3, resolution=32)))
    data = [{"image": torch.randn(3, 32, 32)} for _ in range(1024)]

    def loss_fn(model, batch_, generator):
        return config.loss(model, batch_["image"], generator=generator)

    with tempfile.TemporaryDirectory() as out:
        train_config = TrainConfig(steps=steps, batch_size=batch, warmup_steps=10, checkpoint_every=0, bf16=bf16,
                                   log_every=10)
        trainer = Trainer(model, loss_fn, data, train_config, out, model_config={"kind": "bench"}, progress=False,
                          device=DEVICE)
        result = trainer.fit()
    return {"bf16": bf16, "steps": steps, "batch": batch, "wall_s": result.wall_time,
            "steps_per_s": steps / result.wall_time, "img_per_s": steps * batch / result.wall_time}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=".")
    parser.add_argument("--smoke", action="store_true", help="CPU + tiny network, to check the script itself")
    args = parser.parse_args()
    global DEVICE, PRESET
    if args.smoke:
        DEVICE, PRESET = "cpu", "tiny"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    results = {"device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu", "torch": torch.__version__, "sampling": [], "training": []}
    for batch in (64, 256) if not args.smoke else (4,):
        for bf16 in (False, True):
            results["sampling"].append(row := sampling(batch, bf16))
            print(json.dumps(row), flush=True)
    for bf16 in (False, True):
        results["training"].append(row := training(bf16))
        print(json.dumps(row), flush=True)
    with open(f"{args.out}/gpu_bench.json", "w") as f:
        json.dump(results, f, indent=2)
    print("\n| batch | bf16 | noisecraft img/s | diffusers img/s | speed-up | overhead ours | overhead diffusers |")
    print("|---|---|---|---|---|---|---|")
    for r in results["sampling"]:
        print(f"| {r['batch']} | {r['bf16']} | {r['noisecraft_img_s']:.0f} | {r['diffusers_img_s']:.0f} | "
              f"{r['speedup']:.2f}x | {r['noisecraft_overhead']:.1%} | {r['diffusers_overhead']:.1%} |")
    print("\n| bf16 | batch | steps/s | img/s |")
    print("|---|---|---|---|")
    for r in results["training"]:
        print(f"| {r['bf16']} | {r['batch']} | {r['steps_per_s']:.2f} | {r['img_per_s']:.0f} |")


if __name__ == "__main__":
    main()
