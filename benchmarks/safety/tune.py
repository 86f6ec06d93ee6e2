"""Fit the default policy's concept rules on the DEV half of prompts.jsonl only (never the test half):

1. the dev half's unsafe prompts (direct and paraphrased wording; obfuscated ones are left to normalisation) join
   their concept's ``examples``, the dev safe prompts join ``safe_examples`` (flagged in the file by
   ``"fitted_from": "dev"`` in the policy description, so they can be told from the hand-written ones);
2. the threshold (one for every concept) is chosen by 5-fold cross-validation on dev: each fold is scored by a
   policy whose examples hold the other four folds only, and the threshold is the lowest (0.005 grid) at which at
   most ``--max-fpr`` of the out-of-fold dev safe prompts are refused. In-sample dev scores would be optimistic
   (a dev prompt is its own closest example).

    .venv/bin/python benchmarks/safety/tune.py --base policy_before.json --out noisecraft/safety/default_policy.json

Then ``benchmarks/safety/run.py`` reports the test half.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from noisecraft.safety.policy import policy_from_dict  # noqa: E402
from noisecraft.safety.rules import minilm_encode  # noqa: E402
from run import read_prompts  # noqa: E402


class CachedEncoder:
    """MiniLM embeddings computed once per text (the folds re-use them)."""

    def __init__(self):
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        for start in range(0, len(missing), 64):
            batch = missing[start:start + 64]
            self.cache.update(zip(batch, minilm_encode(batch)))
        return torch.stack([self.cache[t] for t in texts])


def with_prompts(base: dict, prompts: list[dict]) -> dict:
    """``base`` with the prompts added to its concepts' examples (unsafe) and safe examples (safe)."""
    data = copy.deepcopy(base)
    concepts = {c["name"]: c for c in data["concepts"]}
    for row in prompts:
        concept = concepts[row["concept"]]
        if row["unsafe"] and row["style"] != "obfuscated":
            concept["examples"] = list(dict.fromkeys(concept["examples"] + [row["text"]]))
        elif not row["unsafe"]:
            concept["safe_examples"] = list(dict.fromkeys(concept.get("safe_examples", []) + [row["text"]]))
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="the policy before fitting (hand-written examples)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prompts", type=Path, default=HERE / "prompts.jsonl")
    parser.add_argument("--max-fpr", type=float, default=0.05)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    torch.set_num_threads(1)
    base = json.loads(args.base.read_text())
    dev = [r for r in read_prompts(args.prompts) if r["split"] == "dev"]
    encode = CachedEncoder()
    order = list(range(len(dev)))
    random.Random(0).shuffle(order)
    out_of_fold = [0.0] * len(dev)
    for fold in range(args.folds):
        held = set(order[fold::args.folds])
        policy = policy_from_dict(with_prompts(base, [dev[i] for i in order if i not in held]), source="fold")
        policy.encode = encode
        scores = policy.matcher.scores([dev[i]["text"] for i in sorted(held)])
        for i, per_concept in zip(sorted(held), scores):
            out_of_fold[i] = max(s.score for s in per_concept)
    safe = [s for s, r in zip(out_of_fold, dev) if not r["unsafe"]]
    allowed = int(args.max_fpr * len(safe))
    threshold = next(t for t in (round(step * 0.005, 3) for step in range(-400, 201))
                     if sum(s >= t for s in safe) <= allowed)
    unsafe = [(s, r) for s, r in zip(out_of_fold, dev) if r["unsafe"]]
    para = [s >= threshold for s, r in unsafe if r["style"] == "paraphrase"]
    print(f"threshold {threshold} (out-of-fold dev: {sum(s >= threshold for s in safe)}/{len(safe)} safe refused, "
          f"paraphrase recall {sum(para)}/{len(para)}, all unsafe {sum(s >= threshold for s, _ in unsafe)}/"
          f"{len(unsafe)})")
    fitted = with_prompts(base, dev)
    for concept in fitted["concepts"]:
        concept["threshold"] = threshold
    args.out.write_text(json.dumps(fitted, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
