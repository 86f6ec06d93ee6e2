"""Opt-in speed-ups of image sampling that keep outputs deterministic (measured in ``benchmarks/perf_pass.py``).

On the 2-core AVX2 CPU, shipped text-to-image model, one thread (benchmarks/RESULTS.md, "Performance pass"):
channels-last weights ~1.2x fewer CPU-seconds per image (pixels within one 8-bit level of the default's), and
``torch.compile`` ~1.5x, bit-identical to eager, but its first call compiles for minutes (seconds from the inductor
cache afterwards), so it pays off in long-running processes (the service), not in one CLI call. The U-Net's attention
already uses ``F.scaled_dot_product_attention``; bf16 autocast was 20x slower on this CPU (no bf16 units) and is not
offered here.
"""

from __future__ import annotations

import torch


def speed_up(pipeline, *, channels_last: bool = False, compile: bool = False):
    """Change ``pipeline``'s raw network in place for faster sampling and return the pipeline.

    ``channels_last``: the weights in NHWC memory format (convolutions then run NHWC; values unchanged, so the state
    dict and checkpoints are the same). ``compile``: ``torch.compile`` around the network (the preconditioner, the
    sampler and the text encoder stay eager). Same seed, same options -> same bits.
    """
    precond = pipeline.model.denoiser
    if channels_last:
        precond.net.to(memory_format=torch.channels_last)
    if compile and not hasattr(precond.net, "_orig_mod"):
        precond.net = torch.compile(precond.net)
    return pipeline
