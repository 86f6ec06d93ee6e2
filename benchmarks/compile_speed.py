"""Seconds per training step of the CPU text-to-image U-Net, eager vs ``torch.compile`` (the trainer's ``compile``).

    python benchmarks/compile_speed.py [--threads 2] [--batch 64] [--steps 5]

One process, the same network, batch and random inputs (base 32 channels, attention at 16 and 8 px, a 16-token
MiniLM-sized context, bf16 autocast, AdamW): first eager, then compiled; the compilation time is reported apart.
"""

from __future__ import annotations

import argparse
import time

import torch

from noisecraft.nets.unet import UNet2D, UNetConfig


def seconds_per_step(net: torch.nn.Module, forward, batch: int, steps: int) -> tuple[float, float]:
    """(seconds of the first two steps, which include any compilation; mean seconds of the next ``steps``)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=generator)
    c_noise = torch.randn(batch, generator=generator)
    context = torch.randn(batch, 16, 384, generator=generator)
    mask = torch.ones(batch, 16, dtype=torch.bool)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = forward(x, c_noise, context=context, context_mask=mask)
        (out.float() - x).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    start = time.perf_counter()
    step(), step()
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return warm, (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = UNet2D(UNetConfig(base_channels=32, attention_resolutions=(16, 8), context_dim=384))
    _, eager = seconds_per_step(net, net, args.batch, args.steps)
    warm, compiled = seconds_per_step(net, torch.compile(net), args.batch, args.steps)
    print(f"threads {args.threads}, batch {args.batch}: eager {eager:.3f} s/step, compiled {compiled:.3f} s/step "
          f"({eager / compiled:.2f}x), first two compiled steps {warm:.0f} s")


if __name__ == "__main__":
    main()
