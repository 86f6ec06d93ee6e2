"""Few-step distillation on digits: quality against network calls, student vs teacher.

Three phases (each its own command, so the two distillations can run side by side in the background):

    .venv/bin/python benchmarks/distill/run.py distill --method consistency --minutes 18
    .venv/bin/python benchmarks/distill/run.py distill --method progressive --minutes 18
    .venv/bin/python benchmarks/distill/run.py eval

The teacher is `benchmarks/out/distill/teacher` (train it first, see benchmarks/RESULTS.md for the command). The
consistency student samples at 1, 2, 4 steps; progressive distillation runs 16 -> 8 -> 4 -> 2 -> 1 and each round's
student samples at its own step count. The teacher is sampled with
euler (2, 4 calls), heun (3, 7, 15, 31 calls: (calls + 1) / 2 steps), dpmpp_2m (2-32) and unipc (2-8); its best
sampler at each budget of 2, 4, 8, 16, 32 calls is reported. Quality: the
Frechet distance between digits-CNN features (benchmarks/common.py, trained on the digits train split) of the test
split and of as many samples (labels balanced, guidance 1), and the CNN's accuracy on the asked digit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import (  # noqa: E402
    OUT_DIR, classifier_outputs, frechet_distance, machine_info, markdown_table, train_digits_classifier, write_json,
)

RUN_DIR = OUT_DIR / "distill"
TEACHER = RUN_DIR / "teacher"
TEACHER_SAMPLERS = ("euler", "heun", "dpmpp_2m", "unipc")
CALLS = (2, 4, 8, 16, 32)


def run_distill(method: str, minutes: float, batch: int, lr: float) -> None:
    from noisecraft.distill import distill

    options = {"student_steps": 4} if method == "consistency" else {"student_steps": 1, "teacher_steps": 16}
    resume = (RUN_DIR / method / "distill.json").is_file()
    # guidance_max=1: the plain conditional model (the teacher's default, guidance 1), one network call per step.
    distill(TEACHER, RUN_DIR / method, method=method, minutes=minutes, batch_size=batch, lr=lr, guidance_max=1.0,
            resume=resume, progress=False, **({} if resume else options))


def quality(images: torch.Tensor, labels: np.ndarray, classifier, real_features: np.ndarray) -> dict:
    features, predicted = classifier_outputs(classifier, images)
    return {"fd": frechet_distance(features, real_features), "class_acc": float((predicted == labels).mean())}


def run_eval(num_samples: int, reuse_teacher: bool) -> None:
    from noisecraft.images.data import digits_dataset
    from noisecraft.images.pipeline import ImagePipeline

    train, test = digits_dataset(16, split="train"), digits_dataset(16, split="test")
    classifier = train_digits_classifier(train.images, torch.tensor(train.labels))
    real_features, real_predicted = classifier_outputs(classifier, test.images)
    labels = np.arange(num_samples) % 10
    rows = [{"model": "real test images (classifier)", "sampler": "-", "steps": "", "calls": "",
             "fd": 0.0, "class_acc": float((real_predicted == np.asarray(test.labels)).mean())}]

    def measure(pipeline, name, sampler, steps):
        start = time.perf_counter()
        images, record = pipeline.sample(num_samples, labels=labels.tolist(), steps=steps, sampler=sampler, seed=0)
        row = {"model": name, "sampler": record["sampler"], "steps": steps, "calls": record["nfe"],
               **quality(images, labels, classifier, real_features), "seconds": time.perf_counter() - start}
        print(json.dumps(row), flush=True)
        return row

    teacher = ImagePipeline.load(TEACHER)
    previous = RUN_DIR / "results.json"
    teacher_rows = json.loads(previous.read_text())["all_teacher_rows"] if reuse_teacher else []
    for calls in CALLS if not teacher_rows else ():
        for sampler in TEACHER_SAMPLERS:
            steps = (calls + 1) // 2 if sampler == "heun" else calls
            if (sampler == "heun" and calls == 2) or (sampler == "euler" and calls > 4) \
                    or (sampler == "unipc" and calls > 8):
                continue  # heun needs 2n - 1 calls; euler / unipc are not the best at larger budgets (CPU time)
            teacher_rows.append(measure(teacher, "teacher", sampler, steps))
    best = {calls: min((r for r in teacher_rows if r["calls"] in (calls, calls - 1)), key=lambda r: r["fd"])
            for calls in CALLS}
    rows += [best[calls] | {"model": "teacher (best sampler)"} for calls in CALLS]
    students = []
    for folder in sorted(RUN_DIR.glob("consistency*")):  # consistency, and copies resumed for longer
        if (folder / "config.json").is_file():
            optimizer_steps = json.loads((folder / "config.json").read_text())["step"]
            student = ImagePipeline.load(folder)
            students += [measure(student, f"{folder.name} student ({optimizer_steps} steps)", None, steps)
                         for steps in (1, 2, 4)]
    for steps in (4, 2, 1):
        folder = RUN_DIR / "progressive" / "rounds" / f"{steps}_steps"
        if (folder / "config.json").is_file():
            students.append(measure(ImagePipeline.load(folder), f"progressive student ({steps}-step round)", None,
                                    steps))
    rows += students
    info = {}
    for method in ("consistency", "progressive"):
        settings = RUN_DIR / method / "distill.json"
        if settings.is_file():
            info[method] = {"settings": json.loads(settings.read_text())}
            rounds = RUN_DIR / method / "rounds.json"
            if rounds.is_file():
                info[method]["rounds"] = json.loads(rounds.read_text())
            config = RUN_DIR / method / "config.json"
            if config.is_file():
                info[method]["optimizer_steps"] = json.loads(config.read_text())["step"]
    teacher_config = json.loads((TEACHER / "config.json").read_text())
    result = {"machine": machine_info(), "num_samples": num_samples, "teacher_steps": teacher_config["step"],
              "distillations": info, "rows": rows, "all_teacher_rows": teacher_rows}
    write_json(result, RUN_DIR / "results.json")
    table = markdown_table(rows, ["model", "sampler", "steps", "calls", "fd", "class_acc"])
    (RUN_DIR / "results.md").write_text(table + "\n")
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="phase", required=True)
    run = sub.add_parser("distill", help="Distil the digits teacher (resumes if the run exists).")
    run.add_argument("--method", choices=("consistency", "progressive"), required=True)
    run.add_argument("--minutes", type=float, default=18.0)
    run.add_argument("--batch", type=int, default=32)
    run.add_argument("--lr", type=float, default=5e-4)
    evaluate = sub.add_parser("eval", help="Sample teacher and students; write results.json / results.md.")
    evaluate.add_argument("--num-samples", type=int, default=500)
    evaluate.add_argument("--reuse-teacher", action="store_true", help="Take the teacher's rows from the last "
                                                                        "results.json (same --num-samples).")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.phase == "distill":
        run_distill(args.method, args.minutes, args.batch, args.lr)
    else:
        run_eval(args.num_samples, args.reuse_teacher)


if __name__ == "__main__":
    main()
