"""Text benchmark: noisecraft masked diffusion (MDLM) vs an autoregressive GPT-2 of the same size, same budget.

Same corpus (the default Shakespeare corpus; Coriolanus and Measure for Measure held out), same character tokenizer
and token ids, same windows (TokenWindows, length L, stride L/4), same batch size, learning rate, warm-up, AdamW,
gradient clipping and EMA, same wall-clock training budget, one run each.

- diffusion: ``noisecraft.textgen.training.train_text`` with the sequence transformer (time_conditioning "none");
- autoregressive: ``transformers.GPT2LMHeadModel`` (GPT2Config of the same width / depth / heads / MLP ratio),
  trained here. Its vocabulary is the tokenizer's plus one id (= the diffusion mask id) used as a beginning-of-window
  token: input ``[BOS] + w[:-1]``, targets ``w``, so it scores all L tokens of a window with no context from outside
  the window, exactly what the diffusion NELBO scores.

Phases (``--phase``): ``train-diffusion``, ``train-ar``, ``evaluate``, or ``all`` (both trainings at once, as two
processes of ``--threads`` threads each, so background load hits both alike; then ``evaluate``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/text/run.py --minutes 15 --out benchmarks/out/text
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from noisecraft.textgen.data import HELD_OUT_PLAYS, TokenWindows, shakespeare_corpus  # noqa: E402
from noisecraft.textgen.tokenizers import CharTokenizer, load_tokenizer  # noqa: E402

LN2 = math.log(2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phase", default="all", choices=("all", "train-diffusion", "train-ar", "evaluate"))
    p.add_argument("--out", default="benchmarks/out/text", help="run folder (models, logs, evaluation)")
    p.add_argument("--results", default=None, help="results JSON (default benchmarks/text/results_<date>.json)")
    p.add_argument("--minutes", type=float, default=15.0, help="wall-clock training budget of EACH model")
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for training (CUDA)")
    p.add_argument("--eval-windows", type=int, default=None, help="held-out windows to score (default: all)")
    p.add_argument("--mc-samples", type=int, default=4, help="NELBO Monte Carlo draws per held-out window")
    p.add_argument("--n-samples", type=int, default=8, help="unconditional samples per model for cross scoring")
    p.add_argument("--timing-repeats", type=int, default=3)
    p.add_argument("--machine", default="2-core CPU, shared")
    return p.parse_args(argv)


def net_overrides(args) -> dict:
    return {"dim": args.dim, "depth": args.depth, "heads": args.heads, "mlp_ratio": 4, "time_conditioning": "none",
            "dropout": 0.0}


# ---------------------------------------------------------------------------------------------- training

def train_diffusion(args) -> None:
    from noisecraft.textgen.training import train_text

    torch.set_num_threads(args.threads)
    out = Path(args.out) / "diffusion"
    # the Trainer picks CUDA when available, else the CPU
    train = {"warmup_steps": args.warmup, "ema_decay": args.ema, "checkpoint_every": 0, "log_every": 25,
             "grad_clip": 1.0}
    if args.bf16:
        train["bf16"] = True
    if args.device != "cpu":
        train["cache_on_device"] = True
    config = {"corpus": "shakespeare", "out_dir": str(out), "tokenizer": "char", "length": args.length,
              "preset": "small", "net": net_overrides(args), "minutes": args.minutes,
              "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "train": train}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = train_text(config, progress=False)
    info = {"steps": int(result.step), "last_loss": None if result.loss is None else float(result.loss),
            "wall_seconds": time.perf_counter() - wall0, "cpu_seconds": time.process_time() - cpu0,
            "trainer_wall_time": float(result.wall_time), "reason": str(result.reason), "config": config,
            "threads": args.threads}
    (out / "bench_train.json").write_text(json.dumps(info, indent=1))
    print(json.dumps({k: v for k, v in info.items() if k != "config"}), flush=True)


def gpt2_config(args, vocab_size: int):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=vocab_size + 1, n_positions=args.length, n_embd=args.dim, n_layer=args.depth,
                      n_head=args.heads, n_inner=4 * args.dim, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                      bos_token_id=vocab_size, eos_token_id=vocab_size, tie_word_embeddings=True)


def build_gpt2(args, vocab_size: int):
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel(gpt2_config(args, vocab_size))


def ar_inputs(windows: torch.Tensor, bos: int) -> torch.Tensor:
    return torch.cat([torch.full_like(windows[:, :1], bos), windows[:, :-1]], dim=1)


def train_ar(args) -> None:
    """GPT-2 on the same windows: AdamW (lr, betas 0.9/0.999, no weight decay: the Trainer's defaults), linear warm-up
    then constant, grad clip 1, EMA with the Trainer's warm-up rule, random order per epoch, wall-clock budget."""
    from noisecraft.textgen.tokenizers import train_tokenizer
    from noisecraft.training.ema import ema_decay

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    out = Path(args.out) / "ar"
    out.mkdir(parents=True, exist_ok=True)
    corpus = shakespeare_corpus()
    tokenizer = train_tokenizer("char", corpus.texts)
    tokenizer.save(out)
    windows = TokenWindows(tokenizer.encode_documents(corpus.texts), args.length, stride=max(1, args.length // 4))
    stream = windows.stream.to(device)
    offsets = torch.arange(args.length, device=device)
    model = build_gpt2(args, tokenizer.vocab_size).to(device).train()
    ema = build_gpt2(args, tokenizer.vocab_size).to(device).eval()
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), weight_decay=0.0)
    bos = tokenizer.vocab_size
    rng = np.random.default_rng(args.seed)
    order, position = rng.permutation(len(windows)), 0
    step, log = 0, []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - wall0 < 60 * args.minutes:
        if position + args.batch_size > len(order):
            order, position = rng.permutation(len(windows)), 0
        idx = torch.as_tensor(order[position:position + args.batch_size], device=device)
        position += args.batch_size
        batch = stream[(idx * windows.stride).unsqueeze(1) + offsets]
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup) if args.warmup else args.lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(input_ids=ar_inputs(batch, bos)).logits[..., :bos]  # BOS is never a target
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        decay = ema_decay(step, decay=args.ema)
        with torch.no_grad():
            for e, p in zip(ema.parameters(), model.parameters()):
                e.lerp_(p, 1 - decay)
        step += 1
        if step % 25 == 0:
            log.append({"step": step, "loss": loss.item(), "seconds": time.perf_counter() - wall0})
            print(json.dumps(log[-1]), flush=True)
    info = {"steps": step, "last_loss": loss.item(), "wall_seconds": time.perf_counter() - wall0,
            "cpu_seconds": time.process_time() - cpu0, "threads": args.threads, "log": log}
    torch.save({"model": model.state_dict(), "ema": ema.state_dict()}, out / "weights.pt")
    (out / "bench_train.json").write_text(json.dumps(info, indent=1))
    print(json.dumps({k: v for k, v in info.items() if k != "log"}), flush=True)


# -------------------------------------------------------------------------------------------- evaluation

@torch.no_grad()
def ar_bits(model, tokens: torch.Tensor, bos: int, batch_size: int = 32) -> torch.Tensor:
    """Exact negative log2-likelihood of every window ``[N, L]`` (all L tokens, from [BOS]), summed per window."""
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(tokens), batch_size):
        chunk = tokens[start:start + batch_size].to(device)
        logits = model(input_ids=ar_inputs(chunk, bos)).logits[..., :bos].float()  # over the V real tokens
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), chunk, reduction="none").sum(1)
        out.append(nll.double().cpu() / LN2)
    return torch.cat(out)


def ratio_stats(per_window_bits: torch.Tensor, tokens_per_window: int) -> dict:
    n = len(per_window_bits)
    rate = float(per_window_bits.sum()) / (n * tokens_per_window)
    stderr = float(per_window_bits.std(unbiased=True)) / math.sqrt(n) / tokens_per_window if n > 1 else math.nan
    return {"bits_per_char": rate, "stderr_bits_per_char": stderr, "windows": n}


def unigram_entropy(rows: list[list[int]]) -> float:
    counts = np.bincount(np.concatenate([np.asarray(r) for r in rows]))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def heldout_windows(tokenizer, length: int, max_windows: int | None) -> tuple[torch.Tensor, int]:
    """The windows noisecraft's evaluate scores (same selection rule)."""
    texts = [d.text for d in shakespeare_corpus().held_out]
    stream = tokenizer.encode_documents(texts, strict=False)
    windows = TokenWindows(stream, length, stride=length, what="the held-out text")
    chosen = np.arange(len(windows))
    if max_windows is not None and max_windows < len(windows):
        chosen = np.unique(np.linspace(0, len(windows) - 1, max_windows).round().astype(int))
    return windows.collate(chosen.tolist())["tokens"], len(windows)


def ar_generate(model, n: int, new_tokens: int, *, bos: int, seed: int, prefix: list[int] | None = None):
    device = next(model.parameters()).device
    ids = torch.tensor([[bos] + (prefix or [])] * n, dtype=torch.long, device=device)
    torch.manual_seed(seed)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                         min_new_tokens=new_tokens, do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
                         use_cache=True, pad_token_id=bos, eos_token_id=None,
                         suppress_tokens=[bos])  # = the softmax over the V real tokens, as trained
    return out[:, 1:]  # without BOS: prefix + generated


def evaluate(args) -> dict:
    from noisecraft.sequence.likelihood import nelbo
    from noisecraft.sequence.sampling import generate_tokens
    from noisecraft.textgen.evaluate import evaluate_model
    from noisecraft.textgen.pipeline import TextPipeline

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = Path(args.out)
    train_d = json.loads((out / "diffusion" / "bench_train.json").read_text())
    train_a = json.loads((out / "ar" / "bench_train.json").read_text())
    tokenizer = load_tokenizer(out / "diffusion")
    tok_ar = load_tokenizer(out / "ar")
    assert isinstance(tokenizer, CharTokenizer) and tokenizer.chars == tok_ar.chars, "tokenizers differ"
    bos = tokenizer.vocab_size
    L = args.length
    weights = torch.load(out / "ar" / "weights.pt", map_location=device)
    pipes, ars = {}, {}
    for variant, use_ema in (("ema", True), ("raw", False)):
        pipes[variant] = TextPipeline.load(out / "diffusion", device=args.device, use_ema=use_ema)
        ars[variant] = build_gpt2(args, tokenizer.vocab_size).to(device).eval()
        ars[variant].load_state_dict(weights["model" if variant == "raw" else "ema"])
        ars[variant].requires_grad_(False)
    params = {"diffusion": sum(p.numel() for p in pipes["ema"].model.parameters()),
              "autoregressive": sum(p.numel() for p in ars["ema"].parameters())}
    print("parameters", params, flush=True)

    # --- held-out bits per character (same windows for both) ---
    windows, available = heldout_windows(tokenizer, L, args.eval_windows)
    heldout = {}
    for variant in ("ema", "raw"):
        t0 = time.perf_counter()
        rep = evaluate_model(pipes[variant], samples=args.mc_samples, max_windows=args.eval_windows, speed_n=0,
                             seed=args.seed)
        d = {k: rep[k] for k in ("bits_per_char", "stderr_bits_per_char", "stderr_mc_bits_per_char", "windows",
                                 "windows_available", "tokens", "mc_samples", "unknown_characters")}
        d["seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        a = ratio_stats(ar_bits(ars[variant], windows, bos), L)
        a["seconds"] = time.perf_counter() - t0
        heldout[variant] = {"diffusion_nelbo": d, "autoregressive_exact": a,
                            "ratio": d["bits_per_char"] / a["bits_per_char"]}
        print("heldout", variant, json.dumps(heldout[variant]), flush=True)
    assert heldout["ema"]["diffusion_nelbo"]["windows"] == len(windows)

    pipe, ar, model = pipes["ema"], ars["ema"], pipes["ema"].model

    # --- latency of one 256-character sample (interleaved repeats, median) ---
    n_chars = min(256, L)
    timing = {f"diffusion_{s}_steps": [] for s in (16, 64, 256)} | {"autoregressive_kv_cache": []}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    generate_tokens(model, 1, n_chars, steps=16, seed=0)  # warm-up
    ar_generate(ar, 1, 8, bos=bos, seed=0)
    for r in range(args.timing_repeats):
        for s in (16, 64, 256):
            sync()
            t0 = time.perf_counter()
            generate_tokens(model, 1, n_chars, steps=s, seed=100 + r)
            sync()
            timing[f"diffusion_{s}_steps"].append(time.perf_counter() - t0)
        sync()
        t0 = time.perf_counter()
        ar_generate(ar, 1, n_chars, bos=bos, seed=100 + r)
        sync()
        timing["autoregressive_kv_cache"].append(time.perf_counter() - t0)
    speed = {k: {"median_seconds": statistics.median(v), "chars_per_second": n_chars / statistics.median(v),
                 "seconds": v} for k, v in timing.items()}
    print("speed", json.dumps({k: round(v["median_seconds"], 3) for k, v in speed.items()}), flush=True)

    # --- unconditional samples and cross scoring ---
    n = args.n_samples
    samples_tok = {"diffusion_256_steps": generate_tokens(model, n, L, steps=L, seed=1).cpu(),
                   "diffusion_64_steps": generate_tokens(model, n, L, steps=64, seed=2).cpu(),
                   "autoregressive": ar_generate(ar, n, L, bos=bos, seed=3).cpu()}
    cross = {}
    gen = torch.Generator().manual_seed(0)
    for name, toks in samples_tok.items():
        ar_b = ar_bits(ar, toks, bos)
        nb = nelbo(model, toks.to(device), num_samples=16, generator=gen, batch_size=16)
        cross[name] = {"ar_bits_per_char": float(ar_b.sum()) / toks.numel(),
                       "ar_stderr": float(ar_b.std()) / math.sqrt(len(ar_b)) / L,
                       "diffusion_nelbo_bits_per_char": nb["bits_per_token"],
                       "diffusion_nelbo_stderr": nb["stderr_bits_per_token"],
                       "unigram_entropy_bits": unigram_entropy(toks.tolist()),
                       "eos_fraction": float((toks == tokenizer.eos_id).float().mean())}
    cross["heldout_text_reference"] = {"unigram_entropy_bits": unigram_entropy(windows.tolist())}
    print("cross", json.dumps(cross), flush=True)

    def text(ids) -> str:
        return tokenizer.decode([int(i) for i in ids], skip_special=False)

    shown = {"diffusion_unconditional_256_steps": [text(r) for r in samples_tok["diffusion_256_steps"][:2]],
             "autoregressive_unconditional": [text(r) for r in samples_tok["autoregressive"][:2]]}
    prefix = "ROMEO."
    shown["diffusion_prefix_ROMEO"] = pipe.generate({"n": 2, "prefix": prefix, "length": n_chars,
                                                     "steps": n_chars}, seed=4).items
    pre = tokenizer.encode(prefix)
    shown["autoregressive_prefix_ROMEO"] = [text(r) for r in
                                            ar_generate(ar, 2, n_chars - len(pre), bos=bos, seed=5, prefix=pre)]
    template = ("ROMEO.\nBut soft, what light through yonder [______] breaks?\nIt is the east, and [______] is "
                "the sun.\n\nJULIET.\n[__________________________________________]\n")
    shown["diffusion_infill_template"] = template
    shown["diffusion_infill"] = pipe.generate({"infill": template, "steps": 64}, seed=6).items
    shown["autoregressive_infill"] = "not possible without retraining (left-to-right model)"

    met_quality = heldout["ema"]["ratio"] <= 1.15
    met_latency = speed["diffusion_64_steps"]["median_seconds"] < speed["autoregressive_kv_cache"]["median_seconds"]
    report = {
        "benchmark": "text: masked diffusion vs autoregressive GPT-2, equal size and wall-clock budget",
        "date": args.date, "machine": args.machine, "command": args.command,
        "torch": torch.__version__, "python": platform.python_version(), "device": str(device),
        "loadavg_at_eval": os.getloadavg(),
        "setup": {"corpus": "shakespeare (37 plays; held out: " + ", ".join(HELD_OUT_PLAYS) + ")",
                  "tokenizer": "char", "vocab_size": tokenizer.vocab_size, "window": L, "stride": L // 4,
                  "batch_size": args.batch_size, "lr": args.lr, "warmup_steps": args.warmup,
                  "lr_schedule": "linear warm-up then constant", "optimizer": "AdamW betas (0.9, 0.999), wd 0",
                  "grad_clip": 1.0, "ema_decay": args.ema, "net": net_overrides(args),
                  "gpt2": {k: v for k, v in gpt2_config(args, tokenizer.vocab_size).to_dict().items()
                           if k in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner")},
                  "minutes_each": args.minutes, "threads_per_training_process": train_d.get("threads"),
                  "trainings": "concurrent (two processes)" if args.concurrent else "sequential"},
        "parameters": params,
        "training": {"diffusion": {k: train_d[k] for k in ("steps", "last_loss", "wall_seconds", "cpu_seconds")},
                     "autoregressive": {k: train_a[k] for k in ("steps", "last_loss", "wall_seconds",
                                                                "cpu_seconds")}},
        "heldout": heldout, "heldout_windows_available": available,
        "sampling_one_sample": {"characters": n_chars, **speed},
        "latency_64_steps_vs_ar": speed["diffusion_64_steps"]["median_seconds"]
        / speed["autoregressive_kv_cache"]["median_seconds"],
        "cross_scoring": cross, "samples": shown,
        "goal": {"bound_within_1.15x_of_ar (ema weights)": met_quality,
                 "lower_latency_than_ar_at_64_steps": met_latency},
    }
    return report


def main(argv=None) -> None:
    args = parse_args(argv)
    args.date = os.environ.get("BENCH_DATE") or dt.date.today().isoformat()
    args.command = " ".join(["python"] + [str(a) for a in (argv or sys.argv)])
    args.concurrent = os.environ.get("BENCH_CONCURRENT", "") == "1"
    if args.phase == "train-diffusion":
        return train_diffusion(args)
    if args.phase == "train-ar":
        return train_ar(args)
    if args.phase == "all":
        rest, skip = [], False
        for a in (argv or sys.argv[1:]):  # everything but --phase X / --phase=X
            if skip or a.startswith("--phase"):
                skip = a == "--phase"
                continue
            rest.append(a)
        base = [sys.executable, __file__] + rest
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        Path(args.out).mkdir(parents=True, exist_ok=True)
        procs = [subprocess.Popen(base + ["--phase", phase], env=env,
                                  stdout=open(Path(args.out) / f"{phase}.log", "w"), stderr=subprocess.STDOUT)
                 for phase in ("train-diffusion", "train-ar")]
        if any(p.wait() for p in procs):
            raise SystemExit(f"a training process failed; see {args.out}/train-*.log")
        args.concurrent = True
    report = evaluate(args)
    path = Path(args.results or ROOT / "benchmarks" / "text" / f"results_{args.date}.json")
    path.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print("wrote", path, flush=True)
    print(json.dumps({"parameters": report["parameters"], "training": report["training"],
                      "heldout_ema": report["heldout"]["ema"], "goal": report["goal"]}, indent=1))


if __name__ == "__main__":
    main()
