"""Training step speed of the text-to-image U-Net, eager vs ``torch.compile`` (the trainer's ``compile``), with the
model FLOPs per step and (on a GPU) the model FLOPs utilisation.

    python benchmarks/compile_speed.py [--threads 2] [--batch 64] [--steps 5]                  # the CPU figure
    python benchmarks/compile_speed.py --device cuda --batch 256 --steps 30 --modes eager default reduce-overhead \\
        --peak-tflops 989 --out DIR                                                            # a GPU (H200)

One process, the same network (the shipped model's: base 32 channels, attention at 16 and 8 px, a 16-token
MiniLM-sized context), batch and random inputs, bf16 autocast (``--fp32``: none), AdamW. Each mode in ``--modes``:
``eager``; ``default``: ``torch.compile(net)``; ``reduce-overhead``: ``torch.compile(net, mode="reduce-overhead")``,
which captures CUDA graphs on a GPU; ``max-autotune``. The first two steps (compilation) are timed apart.
FLOPs per step: ``torch.utils.flop_counter.FlopCounterMode`` over one eager forward + backward (matmuls and
convolutions; the optimizer's elementwise work is not counted), so MFU = FLOPs per step x steps/s / peak FLOP/s,
with ``--peak-tflops`` the device's dense peak at the precision used (H200 SXM: 989 bf16, 494 tf32).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from noisecraft.nets.unet import UNet2D, UNetConfig


def make_step(net: torch.nn.Module, forward, batch: int, device: str, bf16: bool):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=generator).to(device)
    c_noise = torch.randn(batch, generator=generator).to(device)
    context = torch.randn(batch, 16, 384, generator=generator).to(device)
    mask = torch.ones(batch, 16, dtype=torch.bool, device=device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def step() -> None:
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            out = forward(x, c_noise, context=context, context_mask=mask)
        (out.float() - x).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def seconds_per_step(step, steps: int, device: str) -> tuple[float, float]:
    """(seconds of the first two steps, which include any compilation; mean seconds of the next ``steps``)."""
    start = time.perf_counter()
    step(), step()
    sync(device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return warm, (time.perf_counter() - start) / steps


def flops_per_step(step) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast (TF32 matmuls on a GPU)")
    parser.add_argument("--modes", nargs="+", default=["eager", "default"],
                        choices=["eager", "default", "reduce-overhead", "max-autotune"])
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense peak of the device, for MFU")
    parser.add_argument("--out", type=Path, default=None, help="folder for compile_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    net = UNet2D(UNetConfig(base_channels=32, attention_resolutions=(16, 8), context_dim=384)).to(args.device)
    bf16 = not args.fp32
    flops = flops_per_step(make_step(net, net, args.batch, args.device, bf16))
    rows = []
    for mode in args.modes:
        forward = net if mode == "eager" else torch.compile(net, mode=None if mode == "default" else mode)
        warm, seconds = seconds_per_step(make_step(net, forward, args.batch, args.device, bf16), args.steps,
                                         args.device)
        row = {"mode": mode, "s_per_step": seconds, "images_per_s": args.batch / seconds, "first_two_steps_s": warm,
               "flops_per_step": flops, "tflops_per_s": flops / seconds / 1e12}
        if args.peak_tflops:
            row["mfu"] = row["tflops_per_s"] / args.peak_tflops
        rows.append(row)
        print(json.dumps(row), flush=True)
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu, {args.threads} threads"
    print(f"{device}, batch {args.batch}, {'bf16 autocast' if bf16 else 'fp32'}, "
          f"{flops / 1e9:.1f} GFLOP per step (forward + backward)")
    for row in rows:
        mfu = f", MFU {row['mfu']:.1%}" if "mfu" in row else ""
        print(f"{row['mode']}: {row['s_per_step']:.3f} s/step ({rows[0]['s_per_step'] / row['s_per_step']:.2f}x "
              f"eager), {row['images_per_s']:.0f} images/s, {row['tflops_per_s']:.2f} TFLOP/s{mfu}; first two steps "
              f"{row['first_two_steps_s']:.0f} s")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "compile_speed.json").write_text(json.dumps({"device": device, "args": vars(args) | {
            "out": str(args.out)}, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
