"""Sampling speed of the shipped text-to-image model on the CPU, with and without each network speed-up.

    OMP_NUM_THREADS=1 python benchmarks/perf_pass.py [--threads 1] [--n 2] [--steps 8] [--repeats 3]
        [--variants eager sdpa_math channels_last bf16 compile] [--out benchmarks/out/perf_pass.json]

Each variant changes only the raw network inside the shipped model's preconditioner (``model.denoiser.net``), then
``ImagePipeline.sample`` draws ``n`` images of a fixed prompt (classifier-free guidance: a batch of 2n per network
call) with ``steps`` Heun steps, seed 0:

- ``eager``: the model as shipped (fp32, contiguous; its attention already calls ``F.scaled_dot_product_attention``);
- ``sdpa_math``: the same under ``sdpa_kernel(SDPBackend.MATH)``, PyTorch's explicit softmax(QK^T)V: what the
  attention would cost without the fused SDPA kernel;
- ``channels_last``: weights and input in NHWC memory format (output back to NCHW); ``channels_last_weights``:
  the weights alone converted in place (no wrapper; the convolutions' outputs follow the weights' format);
- ``bf16``: the network under ``torch.autocast("cpu", bfloat16)`` (the output cast back to fp32);
- ``compile``: ``torch.compile(net)`` (its first call, which compiles, is timed apart); ``compile_channels_last``:
  both;
- ``cuda_graphs`` (``--device cuda``): ``torch.compile(net, mode="reduce-overhead")``, replaying CUDA graphs.

Rounds run the variants in turn (interleaved, so a change in the machine's load hits every variant alike) and report
the median and best of ``repeats`` rounds in wall seconds and in this process's CPU seconds (``time.process_time``,
the cost that matters on a shared machine, where wall time depends on the other jobs). For each variant the images
are compared with eager (largest difference in 8-bit levels) and with its own previous round (same bits?).
``benchmarks/compile_speed.py`` measures ``torch.compile`` for training steps; this script is its sampling half.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle above a blue square"


class ChannelsLast(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.config = net.to(memory_format=torch.channels_last), net.config

    def forward(self, x, c_noise, **cond):
        return self.net(x.contiguous(memory_format=torch.channels_last), c_noise, **cond).contiguous()


class Bf16Autocast(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.config = net, net.config

    def forward(self, x, c_noise, **cond):
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            out = self.net(x, c_noise, **cond)
        return out.float()


@contextlib.contextmanager
def variant(pipeline, name: str):
    """The pipeline with its raw network changed as ``name`` says; restored afterwards."""
    precond = pipeline.model.denoiser
    original = precond.net
    context = contextlib.nullcontext()
    if name == "sdpa_math":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        context = sdpa_kernel(SDPBackend.MATH)
    elif name == "channels_last":
        precond.net = ChannelsLast(original)
    elif name == "channels_last_weights":  # weights only, in place: the convolutions then run NHWC
        original.to(memory_format=torch.channels_last)
    elif name == "compile_channels_last":
        precond.net = torch.compile(ChannelsLast(original))
    elif name == "bf16":
        precond.net = Bf16Autocast(original)
    elif name == "compile":
        precond.net = torch.compile(original)
    elif name == "cuda_graphs":  # torch.compile's CUDA-graph mode (GPU only)
        precond.net = torch.compile(original, mode="reduce-overhead")
    elif name != "eager":
        raise ValueError(f"unknown variant {name!r}")
    try:
        with context:
            yield
    finally:
        precond.net = original.to(memory_format=torch.contiguous_format)


def timed_sample(pipeline, n: int, steps: int) -> tuple[torch.Tensor, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    images, _ = pipeline.sample(n, prompt=PROMPT, steps=steps, seed=0)
    if images.is_cuda:
        torch.cuda.synchronize()
    return images, time.perf_counter() - wall, time.process_time() - cpu


def levels(images: torch.Tensor) -> torch.Tensor:
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.int16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "noisecraft" / "assets" / "shapes_t2i"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (variant cuda_graphs: GPU only)")
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["eager", "sdpa_math", "channels_last", "bf16", "compile"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "perf_pass.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from noisecraft.images.pipeline import ImagePipeline

    pipeline = ImagePipeline.load(args.model, device=args.device)
    reference, first, failed = None, {}, {}
    for name in list(args.variants):  # warm-up: loads the text encoder, compiles, fills caches
        try:
            with variant(pipeline, name):
                images, wall, cpu = timed_sample(pipeline, args.n, args.steps)
        except Exception as error:  # e.g. no C++ compiler for torch.compile: report it, measure the rest
            failed[name] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            args.variants.remove(name)
            print(f"warm-up {name} failed: {failed[name]}", flush=True)
            continue
        first[name] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "images": levels(images)}
        reference = first[name]["images"] if name == "eager" else reference
        print(f"warm-up {name}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in args.variants}
    same_bits = {name: True for name in args.variants}
    for round_ in range(args.repeats):
        for name in args.variants:
            with variant(pipeline, name):
                images, wall, cpu = timed_sample(pipeline, args.n, args.steps)
            rounds[name].append((wall, cpu))
            same_bits[name] &= torch.equal(levels(images), first[name]["images"])
            print(f"round {round_} {name}: {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)

    rows = []
    for name in args.variants:
        walls, cpus = [w for w, _ in rounds[name]], [c for _, c in rounds[name]]
        difference = None if reference is None else int((first[name]["images"] - reference).abs().max())
        rows.append({"variant": name, "median_wall_s": statistics.median(walls), "best_wall_s": min(walls),
                     "median_cpu_s": statistics.median(cpus), "best_cpu_s": min(cpus),
                     "images_per_cpu_s": args.n / statistics.median(cpus),
                     "first_call_wall_s": first[name]["wall_s"], "first_call_cpu_s": first[name]["cpu_s"],
                     "max_level_difference_vs_eager": difference, "same_bits_every_round": same_bits[name]})
    baseline = next((r for r in rows if r["variant"] == "eager"), rows[0])
    lines = [f"shipped text-to-image model on {args.device}, {args.n} images x {args.steps} Heun steps (CFG: batch "
             f"{2 * args.n}), {args.threads} thread(s), torch {torch.__version__}",
             "| variant | median CPU s | images / CPU s | vs eager (CPU s) | median wall s | images / s (wall) | "
             "first call CPU s | max diff (8-bit levels) vs eager | same bits each round |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['median_cpu_s']:.2f} | {r['images_per_cpu_s']:.3f} | "
                     f"{baseline['median_cpu_s'] / r['median_cpu_s']:.2f}x | {r['median_wall_s']:.2f} | "
                     f"{args.n / r['median_wall_s']:.3g} | "
                     f"{r['first_call_cpu_s']:.1f} | {r['max_level_difference_vs_eager']} | "
                     f"{r['same_bits_every_round']} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines += [f"{name} failed: {reason}" for name, reason in failed.items()]
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                    "failed": failed}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
