"""Molecules at an equal training budget: noisecraft (masked diffusion over SMILES and over SELFIES) vs MOSES's
CharRNN (the strongest MOSES baseline on most metrics; an LSTM language model over SMILES characters), all trained
on the same MOSES subset for the same wall-clock minutes, sampled N molecules each and scored with the MOSES
metrics of noisecraft.molecules.metrics against the MOSES test split. The ceiling row is N molecules drawn at random
from the MOSES training split outside the training subset: real molecules of the same distribution.

    .venv/bin/python benchmarks/molecules/run.py --minutes 30 --train-size 20000 --n 1000
    .venv/bin/python benchmarks/molecules/run.py --minutes 1 --train-size 2000 --n 200 --test-size 2000   # smoke

CharRNN comes from the molsets package (pip install --no-deps molsets==0.3.1); its 2020 code needs two shims
(rdkit.six, DataFrame.append), installed by `_moses()` below before importing it. Its training loop here is MOSES's
own (Adam at its lr 1e-3, its batch of 64, its 3x768 LSTM, StepLR) stopped at the time budget instead of after 80
epochs. Results: one JSON line per system in --out (default benchmarks/out/molecules/results.jsonl).
"""

from __future__ import annotations

import argparse
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


def run_noisecraft(train: list[str], representation: str, minutes: float, n: int, out_dir: Path, preset: str,
                   device: str) -> tuple[list[str], dict]:
    import noisecraft
    from noisecraft.molecules.data import MoleculeSet
    from noisecraft.molecules.training import check_config, train_on_molecules

    folder = out_dir / f"noisecraft_{representation}"
    config = check_config({"out_dir": str(folder), "representation": representation, "preset": preset,
                           "minutes": minutes, "batch_size": 128, "lr": 3e-4,
                           "train": {"checkpoint_every": 0, "warmup_steps": 500}})
    start = time.perf_counter()
    result = train_on_molecules(MoleculeSet(train, [], {"source": "benchmark subset"}), config, progress=False)
    train_s = time.perf_counter() - start
    pipeline = noisecraft.load(folder, device=device)
    start = time.perf_counter()
    rows = pipeline.generate({"n": n}, seed=0).items
    sample_s = time.perf_counter() - start
    return [row["smiles"] for row in rows], {"steps": result.step, "train_s": round(train_s, 1),
                                             "sample_s": round(sample_s, 1)}


def run_charrnn(train: list[str], minutes: float, n: int, device: str) -> tuple[list[str], dict]:
    CharRNN, CharRNNTrainer, get_parser = _moses()
    config = get_parser().parse_args([])
    trainer = CharRNNTrainer(config)
    model = CharRNN(trainer.get_vocabulary(train), config).to(device)
    loader = trainer.get_dataloader(model, train, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma)
    criterion = torch.nn.CrossEntropyLoss()
    start, steps, epochs = time.perf_counter(), 0, 0
    model.train()
    while time.perf_counter() - start < 60 * minutes:
        for prevs, nexts, lens in loader:
            outputs, _, _ = model(prevs.to(device), lens.cpu())
            loss = criterion(outputs.view(-1, outputs.shape[-1]), nexts.to(device).view(-1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            if time.perf_counter() - start >= 60 * minutes:
                break
        else:
            epochs += 1
            scheduler.step()
    train_s = time.perf_counter() - start
    model.eval()
    torch.manual_seed(0)
    start, smiles = time.perf_counter(), []
    while len(smiles) < n:
        smiles.extend(model.sample(min(256, n - len(smiles)), max_length=100))
    return smiles, {"steps": steps, "epochs": epochs, "train_s": round(train_s, 1),
                    "sample_s": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30, help="training budget per system")
    parser.add_argument("--train-size", type=int, default=20_000, help="MOSES training molecules (moses:N)")
    parser.add_argument("--test-size", type=int, default=10_000, help="MOSES test molecules used as reference")
    parser.add_argument("--n", type=int, default=1000, help="molecules sampled per system")
    parser.add_argument("--preset", default="small", help="noisecraft network preset")
    parser.add_argument("--systems", default="ceiling,smiles,selfies,charrnn")
    parser.add_argument("--fcd", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/out/molecules/results.jsonl")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out_dir = args.out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    train = moses_molecules(f"moses:{args.train_size}").smiles
    test = moses_molecules(f"moses-test:{args.test_size}").smiles
    for system in args.systems.split(","):
        if system == "ceiling":  # the same-size random sample of real molecules outside the training subset
            everything = moses_smiles("train")
            order = moses_order(len(everything))[args.train_size:args.train_size + args.n]
            gen, info = [everything[int(i)] for i in order], {"steps": 0}
        elif system in ("smiles", "selfies"):
            gen, info = run_noisecraft(train, system, args.minutes, args.n, out_dir, args.preset, args.device)
        elif system == "charrnn":
            gen, info = run_charrnn(train, args.minutes, args.n, args.device)
        else:
            raise SystemExit(f"unknown system {system!r}")
        metrics = distribution_metrics(gen, train, test, use_fcd=args.fcd, device=args.device)
        quality = targeting_metrics([{"smiles": s} for s in gen])["quality"]
        record = {"system": system, "minutes": args.minutes, "train_size": args.train_size, "n": args.n, **info,
                  **metrics, "quality": quality}
        with args.out.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
        shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in record.items()}
        print(json.dumps(shown, sort_keys=True), flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
