"""Molecules at an equal training budget: noisecraft (masked diffusion over SMILES and over SELFIES) vs MOSES's
CharRNN (the strongest MOSES baseline on most metrics; an LSTM language model over SMILES characters), all trained
on the same MOSES subset for the same wall-clock minutes, sampled N molecules each and scored with the MOSES
metrics of noisecraft.molecules.metrics against the MOSES test split. The ceiling row is N molecules drawn at random
from the MOSES training split outside the training subset: real molecules of the same distribution.

The noisecraft models are conditioned on --properties (default qed,logp,sa) with a property dropped on its own
30% of the time and the whole condition 10%: the distribution rows sample them WITHOUT a condition (the
unconditional model inside), the targeting rows with each --target (NAME=VALUE[@GUIDANCE]), and the hit rate of a
target is compared with the same target's hit rate among the unconditional samples (goal: >= 3x).

    # the CPU run of benchmarks/RESULTS.md (one process per system, started together: same wall-clock budget)
    for s in smiles selfies charrnn; do OMP_NUM_THREADS=1 .venv/bin/python benchmarks/molecules/run.py \
        --systems $s --cpu-minutes 2.5 --net-dim 64 --net-depth 3 --charrnn-hidden 128 --charrnn-layers 2 \
        --n 500 --sample-steps 16 --target-n 200 --test-size 2000 --threads 1 & done; wait
    .venv/bin/python benchmarks/molecules/run.py --systems ceiling --n 500 --test-size 2000 --threads 1
    .venv/bin/python benchmarks/molecules/run.py --minutes 1 --train-size 2000 --n 100 --test-size 500 --target-n 50 \
        --net-dim 64 --net-depth 2 --out /tmp/mol_smoke/results.jsonl   # smoke (minutes)

CharRNN comes from the molsets package (pip install --no-deps molsets==0.3.1); its 2020 code needs two shims
(rdkit.six, DataFrame.append), installed by `_moses()` below before importing it. Its training loop here is MOSES's
own (Adam at its lr 1e-3, its batch of 64, StepLR) stopped at the time budget instead of after 80 epochs; its size
is --charrnn-hidden x --charrnn-layers (MOSES's default 768 x 3, ~10M parameters, on a GPU; on a CPU pick a size
near the diffusion network's). Results: one JSON line per system in --out (default
benchmarks/out/molecules/results.jsonl); the generated molecules beside it (<system>.csv, targeting_*.csv).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from noisecraft.molecules.data import moses_molecules, moses_order, moses_smiles  # noqa: E402
from noisecraft.molecules.metrics import distribution_metrics, targeting_metrics  # noqa: E402


def _moses():
    """Import moses.char_rnn with the shims its code needs on today's RDKit and pandas."""
    import pandas as pd

    six = types.ModuleType("rdkit.six")
    six.iteritems = lambda d: iter(d.items())
    six.PY3 = True
    sys.modules.setdefault("rdkit.six", six)
    if not hasattr(pd.DataFrame, "append"):
        pd.DataFrame.append = lambda self, other, sort=False: pd.concat([self, other], sort=sort)
    from moses.char_rnn import CharRNN
    from moses.char_rnn.config import get_parser
    from moses.char_rnn.trainer import CharRNNTrainer

    return CharRNN, CharRNNTrainer, get_parser


class ProcessClock:
    """``time`` for the Trainer with ``monotonic`` = this process's CPU seconds: on a shared machine (other jobs
    taking the cores) a budget of --cpu-minutes gives each system the same compute, whatever the load."""

    def __getattr__(self, name):
        return getattr(time, name)

    @staticmethod
    def monotonic() -> float:
        return time.process_time()


def budget_clock(args):
    """(clock, minutes): the wall clock with --minutes, or the process CPU clock with --cpu-minutes."""
    return (time.process_time, args.cpu_minutes) if args.cpu_minutes else (time.perf_counter, args.minutes)


def write_rows(path: Path, rows: list[dict]) -> None:
    columns = sorted({key for row in rows for key in row}, key=lambda k: (k != "smiles", k))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def parse_targets(texts: list[str]) -> list[tuple[list[str], float]]:
    """'logp=4.5' -> (['logp=4.5'], 1.0); 'qed=0.9,logp=2.5@2' -> (['qed=0.9', 'logp=2.5'], 2.0)."""
    out = []
    for text in texts:
        body, _, guidance = text.partition("@")
        out.append((body.split(","), float(guidance or 1)))
    return out


def generate_many(pipeline, request: dict, n: int, seed: int) -> list[dict]:
    """n molecules in chunks of at most the pipeline's MAX_N (chunk i drawn with seed + i)."""
    from noisecraft.molecules.pipeline import MAX_N

    rows: list[dict] = []
    for i, start in enumerate(range(0, n, MAX_N)):
        rows += pipeline.generate({**request, "n": min(MAX_N, n - start)}, seed=seed + i).items
    return rows


def run_noisecraft(train: list[str], representation: str, args, out_dir: Path) -> tuple[list[str], dict]:
    import noisecraft
    from noisecraft.molecules.data import MoleculeSet
    from noisecraft.molecules.training import check_config, train_on_molecules

    folder = out_dir / f"noisecraft_{representation}"
    net = {"dim": args.net_dim, "depth": args.net_depth} if args.net_dim else {}
    config = check_config({"out_dir": str(folder), "representation": representation, "preset": args.preset,
                           "net": net, "minutes": args.minutes, "batch_size": args.batch_size, "lr": args.lr,
                           "properties": args.properties, "seed": args.seed,
                           "train": {"checkpoint_every": 0, "warmup_steps": 200, "bf16": args.bf16}})
    if args.cpu_minutes:
        import noisecraft.training.trainer as trainer_module

        trainer_module.time = ProcessClock()
        config["minutes"] = args.cpu_minutes
    start, cpu = time.perf_counter(), time.process_time()
    if args.reuse and (folder / "model.safetensors").is_file():  # sample and score an already trained model again
        from noisecraft.training.checkpoint import read_config

        result = types.SimpleNamespace(step=read_config(folder).get("step"))
    else:
        result = train_on_molecules(MoleculeSet(train, [], {"source": "benchmark subset"}), config, progress=False)
    train_s, train_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    pipeline = noisecraft.load(folder, device=args.device)
    steps = {"steps": args.sample_steps} if args.sample_steps else {}
    start = time.perf_counter()
    rows = generate_many(pipeline, steps, args.n, args.seed)
    sample_s = time.perf_counter() - start
    write_rows(out_dir / f"{representation}.csv", rows)
    info = {"steps": result.step, "train_s": round(train_s, 1), "train_cpu_s": round(train_cpu_s, 1),
            "sample_s": round(sample_s, 1),
            "parameters": sum(p.numel() for p in pipeline.model.parameters()),
            "sample_steps": args.sample_steps or int(pipeline.spec.max_length), "targeting": []}
    for targets, guidance in parse_targets(args.target if args.properties else []):
        start = time.perf_counter()
        hit = generate_many(pipeline, {"targets": targets, "guidance": guidance, **steps}, args.target_n,
                            args.seed + 1)
        tag = "_".join(targets).replace("=", "") + f"_g{guidance:g}"
        write_rows(out_dir / f"targeting_{representation}_{tag}.csv", hit)
        values = dict(t.split("=") for t in targets)
        # the unconditional samples scored against the same targets: the baseline hit rate
        base = targeting_metrics([{**row, **{f"target_{k}": v for k, v in values.items()}} for row in rows])
        aimed = targeting_metrics(hit)
        joint = sum(all(row.get(name) not in (None, "") and abs(float(row[name]) - float(v))
                        <= _tolerance(name) for name, v in values.items()) for row in hit) / len(hit)
        joint_base = sum(all(row.get(name) not in (None, "") and abs(float(row[name]) - float(v))
                             <= _tolerance(name) for name, v in values.items()) for row in rows) / len(rows)
        info["targeting"].append({"targets": targets, "guidance": guidance, "n": len(hit),
                                  "seconds": round(time.perf_counter() - start, 1),
                                  "hit_rate": joint, "unconditional_hit_rate": joint_base,
                                  "ratio": joint / joint_base if joint_base else None,
                                  "mae": {k: aimed[k]["mae"] for k in values},
                                  "unconditional_mae": {k: base[k]["mae"] for k in values},
                                  "validity": sum(bool(r["smiles"]) for r in hit) / len(hit)})
        print(json.dumps(info["targeting"][-1]), flush=True)
    return [row["smiles"] for row in rows], info


def _tolerance(name: str) -> float:
    from noisecraft.molecules.properties import PROPERTIES

    return PROPERTIES[name].tolerance


def run_charrnn(train: list[str], args, out_dir: Path) -> tuple[list[str], dict]:
    CharRNN, CharRNNTrainer, get_parser = _moses()
    config = get_parser().parse_args(["--hidden", str(args.charrnn_hidden), "--num_layers",
                                      str(args.charrnn_layers)])
    torch.manual_seed(args.seed)
    trainer = CharRNNTrainer(config)
    model = CharRNN(trainer.get_vocabulary(train), config).to(args.device)
    loader = trainer.get_dataloader(model, train, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma)
    criterion = torch.nn.CrossEntropyLoss()
    clock, minutes = budget_clock(args)
    start, steps, epochs = time.perf_counter(), 0, 0
    begun, cpu = clock(), time.process_time()
    model.train()
    while clock() - begun < 60 * minutes:
        for prevs, nexts, lens in loader:
            outputs, _, _ = model(prevs.to(args.device), lens.cpu())
            loss = criterion(outputs.view(-1, outputs.shape[-1]), nexts.to(args.device).view(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            if clock() - begun >= 60 * minutes:
                break
        else:
            epochs += 1
            scheduler.step()
    train_s, train_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    model.eval()
    torch.manual_seed(args.seed)
    start, smiles = time.perf_counter(), []
    with torch.no_grad():
        while len(smiles) < args.n:
            smiles.extend(model.sample(min(256, args.n - len(smiles)), max_length=100))
    write_rows(out_dir / "charrnn.csv", [{"smiles": s} for s in smiles])
    return smiles, {"steps": steps, "epochs": epochs, "train_s": round(train_s, 1),
                    "train_cpu_s": round(train_cpu_s, 1), "last_loss": float(loss.detach()),
                    "sample_s": round(time.perf_counter() - start, 1),
                    "parameters": sum(p.numel() for p in model.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=25, help="training budget per system (wall clock)")
    parser.add_argument("--cpu-minutes", type=float, default=0,
                        help="training budget in CPU minutes of the process instead (a shared machine; use with "
                             "--threads 1)")
    parser.add_argument("--train-size", type=int, default=20_000, help="MOSES training molecules (moses:N)")
    parser.add_argument("--test-size", type=int, default=5_000, help="MOSES test molecules used as reference")
    parser.add_argument("--n", type=int, default=1000, help="molecules sampled per system (unconditional)")
    parser.add_argument("--preset", default="small", help="noisecraft network preset")
    parser.add_argument("--net-dim", type=int, default=128, help="transformer width (0: the preset's)")
    parser.add_argument("--net-depth", type=int, default=4, help="transformer blocks (with --net-dim)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in noisecraft training (GPU)")
    parser.add_argument("--lr", type=float, default=1e-3, help="noisecraft peak learning rate")
    parser.add_argument("--properties", default="qed,logp,sa", help="properties the noisecraft models condition on")
    parser.add_argument("--sample-steps", type=int, default=0, help="denoising steps (0: the model's length)")
    parser.add_argument("--target", action="append", default=None,
                        help="NAME=VALUE[,NAME=VALUE][@GUIDANCE] targeting run (repeatable)")
    parser.add_argument("--target-n", type=int, default=300, help="molecules per targeting run")
    parser.add_argument("--charrnn-hidden", type=int, default=256, help="CharRNN LSTM width (MOSES: 768)")
    parser.add_argument("--charrnn-layers", type=int, default=3, help="CharRNN LSTM layers (MOSES: 3)")
    parser.add_argument("--systems", default="ceiling,smiles,selfies,charrnn")
    parser.add_argument("--fcd", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reuse", action="store_true",
                        help="noisecraft systems: sample the model already trained in the output folder again")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/molecules/results.jsonl")
    args = parser.parse_args()
    args.target = args.target if args.target is not None else ["logp=4.5", "logp=1.0", "qed=0.6@2"]
    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = args.out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    train = moses_molecules(f"moses:{args.train_size}").smiles
    test = moses_molecules(f"moses-test:{args.test_size}").smiles
    for system in args.systems.split(","):
        started = time.time()
        if system == "ceiling":  # the same-size random sample of real molecules outside the training subset
            everything = moses_smiles("train")
            order = moses_order(len(everything))[args.train_size:args.train_size + args.n]
            if len(order) < args.n:
                raise SystemExit(f"ceiling: only {len(order)} training molecules lie outside a subset of "
                                 f"{args.train_size}; lower --train-size or --n")
            gen, info = [everything[int(i)] for i in order], {"steps": 0}
        elif system in ("smiles", "selfies"):
            gen, info = run_noisecraft(train, system, args, out_dir)
        elif system == "charrnn":
            gen, info = run_charrnn(train, args, out_dir)
        else:
            raise SystemExit(f"unknown system {system!r}")
        metrics = distribution_metrics(gen, train, test, use_fcd=args.fcd, device=args.device, train_canonical=True)
        quality = targeting_metrics([{"smiles": s} for s in gen])["quality"]
        record = {"system": system, "minutes": args.minutes, "cpu_minutes": args.cpu_minutes, "train_size": args.train_size, "n": args.n,
                  "test_size": args.test_size, "started": time.strftime("%Y-%m-%dT%H:%M", time.gmtime(started)),
                  **info, **metrics, "quality": quality}
        with args.out.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in record.items()}
        print(json.dumps(shown, sort_keys=True), flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
