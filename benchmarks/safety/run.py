"""Measure the safety filters on a labelled prompt set: recall (unsafe prompts refused) and false-positive rate
(safe prompts refused) of the keyword rules alone, the semantic (MiniLM concept) rules alone, and both.

    .venv/bin/python benchmarks/safety/run.py                      # the shipped policy, reported on the test half
    .venv/bin/python benchmarks/safety/run.py --split dev          # the half the thresholds were chosen on
    .venv/bin/python benchmarks/safety/run.py --tune               # choose thresholds on the dev half only
    .venv/bin/python benchmarks/safety/run.py --no-safe-examples   # ablation: concepts without their near misses

prompts.jsonl: one {text, unsafe, concept, style, split} per line; style is direct, paraphrase, obfuscated (unsafe)
or safe_lookalike (safe prompts that share words with an unsafe concept: "a killer whale"). ``split`` alternates
dev/test within each (concept, style) group. Thresholds are chosen on dev (``--tune``: per concept, the lowest
threshold on a 0.01 grid at which the concept refuses at most ``--max-fp`` dev safe prompts); the numbers to
quote are those of the test half. A prompt counts as detected when any rule refuses it (whatever the concept).
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

STYLES = ("direct", "paraphrase", "obfuscated", "safe_lookalike")


def read_prompts(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def concept_fires(per_concept, thresholds, use_safe: bool) -> bool:
    return any(score >= t and not (use_safe and safe > score) for (score, _, safe), t in zip(per_concept, thresholds))


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


def tune(rows, scores, concepts, use_safe: bool, max_fp: int) -> list[float]:
    """Per concept: the lowest threshold (0.01 grid) at which it refuses at most ``max_fp`` dev safe prompts."""
    thresholds = []
    safe = [i for i, r in enumerate(rows) if r["split"] == "dev" and not r["unsafe"]]
    for c, _ in enumerate(concepts):
        for step in range(20, 101):
            t = step / 100
            fp = sum(scores[i][c][0] >= t and not (use_safe and scores[i][c][2] > scores[i][c][0]) for i in safe)
            if fp <= max_fp:
                thresholds.append(t)
                break
        else:
            thresholds.append(1.0)
    return thresholds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=Path, default=HERE / "prompts.jsonl")
    parser.add_argument("--policy", default=None, help="policy file (default: the shipped one)")
    parser.add_argument("--split", default="test", choices=("test", "dev", "all"))
    parser.add_argument("--tune", action="store_true", help="choose the concept thresholds on the dev half")
    parser.add_argument("--max-fp", type=int, default=0, help="--tune: dev safe prompts each concept may refuse")
    parser.add_argument("--no-safe-examples", action="store_true", help="ignore the concepts' safe_examples")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    policy = load_policy(args.policy)
    rows = read_prompts(args.prompts)
    use_safe = not args.no_safe_examples
    start = time.perf_counter()
    keyword = [any(not d.allowed for d in ds) for ds in policy.check_texts([r["text"] for r in rows],
                                                                           concepts=False)]
    scores = policy.matcher.scores([r["text"] for r in rows])
    seconds = time.perf_counter() - start
    thresholds = [c.threshold for c in policy.concepts]
    if args.tune:
        thresholds = tune(rows, scores, policy.concepts, use_safe, args.max_fp)
    semantic = [concept_fires(s, thresholds, use_safe) for s in scores]
    both = [k or s for k, s in zip(keyword, semantic)]

    chosen = [i for i, r in enumerate(rows) if args.split == "all" or r["split"] == args.split]
    sub = [rows[i] for i in chosen]
    report = {"policy": policy.identity(), "split": args.split, "prompts": len(sub), "safe_examples": use_safe,
              "thresholds": dict(zip([c.name for c in policy.concepts], thresholds)),
              "tuned_on": "dev" if args.tune else "shipped policy", "seconds": round(seconds, 1), "rules": {}}
    print(f"policy {policy.name} ({policy.identity()['sha256']}), split {args.split} ({len(sub)} prompts), "
          f"concept thresholds {report['thresholds']}{' (tuned on dev)' if args.tune else ''}, "
          f"safe_examples {'on' if use_safe else 'off'}; scored {len(rows)} prompts in {seconds:.1f} s")
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
