"""Measure the safety filters on a labelled prompt set: recall (unsafe prompts refused) and false-positive rate
(safe prompts refused) of the keyword rules alone, the semantic (MiniLM concept) rules alone, and both.

    .venv/bin/python benchmarks/safety/run.py                      # the shipped policy, reported on the test half
    .venv/bin/python benchmarks/safety/run.py --split dev          # the half the thresholds were chosen on
    .venv/bin/python benchmarks/safety/run.py --split dev --tune   # choose the threshold on the dev half only
    .venv/bin/python benchmarks/safety/run.py --no-safe-examples   # ablation: safe_weight 0 (no near misses)
    .venv/bin/python benchmarks/safety/run.py --top-k 1 --safe-weight 0 --tune  # ablation: nearest example only

prompts.jsonl: one {text, unsafe, concept, style, split} per line; style is direct, paraphrase, obfuscated (unsafe)
or safe_lookalike (safe prompts that share words with an unsafe concept: "a killer whale"). ``split`` alternates
dev/test within each (concept, style) group; ``batch`` 2 marks the second batch, written in new wordings after the
first policy was tuned (its dev-half misses showed how far the first examples generalised). Thresholds are chosen
on dev (``--tune``: one threshold for every concept, the lowest on a 0.005 grid at which at most ``--max-fpr`` of
the dev safe prompts are refused); the numbers to quote are those of the test half. A prompt counts as detected
when any rule refuses it (whatever the concept).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from noisecraft.safety import load_policy  # noqa: E402
from noisecraft.safety.rules import ConceptMatcher, ConceptScoring  # noqa: E402

STYLES = ("direct", "paraphrase", "obfuscated", "safe_lookalike")


def read_prompts(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def concept_fires(per_concept, thresholds) -> bool:
    return any(scored.score >= t for scored, t in zip(per_concept, thresholds))


def metrics(rows: list[dict], flagged: list[bool]) -> dict:
    out = {}
    groups = defaultdict(list)
    for row, flag in zip(rows, flagged):
        groups[row["style"]].append(flag)
        groups["all unsafe" if row["unsafe"] else "all safe"].append(flag)
    for name, flags in groups.items():
        out[name] = (sum(flags), len(flags))
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def tune(rows, scores, concepts, max_fpr: float) -> list[float]:
    """One threshold for all concepts: the lowest (0.005 grid) at which at most ``max_fpr`` of the dev safe
    prompts are refused."""
    safe = [max(s.score for s in scores[i]) for i, r in enumerate(rows) if r["split"] == "dev" and not r["unsafe"]]
    allowed = int(max_fpr * len(safe))
    for step in range(-400, 201):
        t = round(step * 0.005, 3)
        if sum(score >= t for score in safe) <= allowed:
            return [t] * len(concepts)
    return [1.0] * len(concepts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=Path, default=HERE / "prompts.jsonl")
    parser.add_argument("--policy", default=None, help="policy file (default: the shipped one)")
    parser.add_argument("--split", default="test", choices=("test", "dev", "all"))
    parser.add_argument("--tune", action="store_true", help="choose the concept threshold on the dev half")
    parser.add_argument("--max-fpr", type=float, default=0.05, help="--tune: share of dev safe prompts refused")
    parser.add_argument("--no-safe-examples", action="store_true", help="safe_weight 0: ignore the safe examples")
    parser.add_argument("--top-k", type=int, default=None, help="override the policy's concept_scoring top_k")
    parser.add_argument("--safe-weight", type=float, default=None, help="override concept_scoring safe_weight")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    policy = load_policy(args.policy)
    rows = read_prompts(args.prompts)
    scoring = ConceptScoring(args.top_k or policy.scoring.top_k,
                             0.0 if args.no_safe_examples else (policy.scoring.safe_weight if args.safe_weight is None
                                                                 else args.safe_weight))
    use_safe = scoring.safe_weight > 0
    matcher = ConceptMatcher(policy.concepts, policy.encode, scoring)
    start = time.perf_counter()
    keyword = [any(not d.allowed for d in ds) for ds in policy.check_texts([r["text"] for r in rows],
                                                                           concepts=False)]
    scores = matcher.scores([r["text"] for r in rows])
    seconds = time.perf_counter() - start
    thresholds = [c.threshold for c in policy.concepts]
    if args.tune:
        thresholds = tune(rows, scores, policy.concepts, args.max_fpr)
    semantic = [concept_fires(s, thresholds) for s in scores]
    both = [k or s for k, s in zip(keyword, semantic)]

    chosen = [i for i, r in enumerate(rows) if args.split == "all" or r["split"] == args.split]
    sub = [rows[i] for i in chosen]
    report = {"policy": policy.identity(), "split": args.split, "prompts": len(sub), "safe_examples": use_safe,
              "scoring": {"top_k": scoring.top_k, "safe_weight": scoring.safe_weight},
              "thresholds": dict(zip([c.name for c in policy.concepts], thresholds)),
              "tuned_on": "dev" if args.tune else "shipped policy", "seconds": round(seconds, 1), "rules": {}}
    print(f"policy {policy.name} ({policy.identity()['sha256']}), split {args.split} ({len(sub)} prompts), "
          f"concept thresholds {report['thresholds']}{' (tuned on dev)' if args.tune else ''}, "
          f"scoring top_k={scoring.top_k} safe_weight={scoring.safe_weight:g}; scored {len(rows)} prompts in "
          f"{seconds:.1f} s")
    header = f"{'rules':<9} {'style':<15} {'metric':<7} {'value':>6}  {'n':>8}  95% CI"
    print(header)
    print("-" * len(header))
    for name, flags in (("keyword", keyword), ("semantic", semantic), ("both", both)):
        counts = metrics(sub, [flags[i] for i in chosen])
        report["rules"][name] = {}
        for style in (*STYLES, "all unsafe", "all safe"):
            if style not in counts:
                continue
            k, n = counts[style]
            metric = "FPR" if style in ("safe_lookalike", "all safe") else "recall"
            low, high = wilson(k, n)
            report["rules"][name][style] = {metric: round(k / n, 3), "k": k, "n": n}
            if style == "all safe" and "safe_lookalike" in counts:
                continue  # the same prompts
            print(f"{name:<9} {style:<15} {metric:<7} {k / n:6.3f}  {k:>3}/{n:<4}  [{low:.2f}, {high:.2f}]")
    if args.split != "all":
        misses = [r["text"] for i, r in zip(chosen, sub) if r["unsafe"] and not both[i]]
        false = [r["text"] for i, r in zip(chosen, sub) if not r["unsafe"] and both[i]]
        report["missed"], report["false_positives"] = misses, false
        print(f"\nmissed by both ({len(misses)}): {misses}")
        print(f"false positives of both ({len(false)}): {false}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
