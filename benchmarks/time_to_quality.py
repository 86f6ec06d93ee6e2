"""Benchmark 3: time to quality on 16x16 digits, the same wall-clock training budget for three systems.

Systems, each trained for `--minutes` on the digits train split (exported once as a PNG folder, one sub-folder per
digit) with batch size 64, in its own virtual environment and process:

* noisecraft: its default CPU recipe, `train_images` with class-conditional EDM on the "small" U-Net preset
  (`train.max_minutes` = the budget); samples: Heun, 32 steps (63 NFE), no guidance.
* diffusers: the recipe of its `train_unconditional.py` example (UNet2DModel, DDPMScheduler with linear betas,
  epsilon loss, AdamW lr 1e-4 betas (0.95, 0.999) weight decay 1e-6, 500 warm-up steps, grad clip 1, EMAModel
  with warm-up) sized to the digits (block widths 32/64/64, attention at 8 px like noisecraft's preset) and made
  class-conditional with `num_class_embeds=10`; the learning rate stays constant after warm-up because the number
  of steps a time budget allows is not known in advance (the example decays it with a cosine over a fixed count).
  Samples: DDIM, 50 steps (50 NFE).
* denoising-diffusion-pytorch: its `Trainer` on the image folder (unconditional; Unet dim 32, mults (1, 2, 2) to
  match the widths above; library defaults otherwise: v-prediction, sigmoid betas, Adam lr 1e-4, EMA 0.995;
  horizontal flips off as for the others - a mirrored digit is not a digit). Samples: its DDIM, 50 steps.

Quality: Frechet distance between features of real test images and of as many samples, in the 64-d penultimate layer
of a small CNN trained here on the real train split (common.DigitsClassifier, seed 0), and, for class-conditional
systems, the classifier's accuracy on the asked label. The floor (train vs test images) is reported alongside.

One command from the repository root (after `bash benchmarks/setup_peers.sh`):
    .venv/bin/python benchmarks/time_to_quality.py --minutes 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` when run as a worker from any directory
from common import (  # noqa: E402
    BENCH_DIR, OUT_DIR, classifier_outputs, frechet_distance, machine_info, markdown_table, train_digits_classifier,
    write_json,
)

SYSTEMS = ("noisecraft", "diffusers", "ddpm")
VENVS = {"noisecraft": BENCH_DIR.parent / ".venv", "diffusers": BENCH_DIR / ".venv-diffusers",
         "ddpm": BENCH_DIR / ".venv-ddpm"}
BATCH_SIZE = 64


# ------------------------------------------------------------------------------------------------------ workers
# Each worker trains for `minutes`, then writes samples.npy ([N, 1, 16, 16] in [-1, 1]), labels.npy (asked digit
# per sample, or absent when unconditional) and worker.json (steps, seconds, sampler) into `run_dir`.


def _labels(n: int) -> np.ndarray:
    return np.arange(n) % 10  # balanced digits 0..9


def train_noisecraft(data: Path, run_dir: Path, minutes: float, num_samples: int) -> dict:
    from noisecraft.images.pipeline import ImagePipeline
    from noisecraft.images.training import train_images

    result = train_images({
        "data": str(data), "out_dir": str(run_dir / "run"), "channels": 1, "resolution": 16, "conditional": True,
        "preset": "small", "parameterization": "edm",
        "train": {"batch_size": BATCH_SIZE, "steps": 10**7, "max_minutes": minutes, "checkpoint_every": 0},
    }, progress=False)
    pipeline = ImagePipeline.load(run_dir / "run")
    start = time.perf_counter()
    labels = _labels(num_samples)
    images, parameters = pipeline.sample(num_samples, labels=labels.tolist(), steps=32, sampler="heun", seed=0)
    return {"images": images, "labels": labels, "steps": result.step, "train_seconds": result.wall_time,
            "sample_seconds": time.perf_counter() - start, "sampler": "heun, 32 steps (karras)",
            "nfe": parameters["nfe"], "parameters": sum(p.numel() for p in pipeline.model.parameters())}


def train_diffusers(data: Path, run_dir: Path, minutes: float, num_samples: int) -> dict:
    import torch.nn.functional as F
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    from noisecraft.images.data import ImageFolderDataset

    dataset = ImageFolderDataset(data, resolution=16, channels=1)
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    labels = torch.tensor([dataset[i]["label"] for i in range(len(dataset))])
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, layers_per_block=2,
                       block_out_channels=(32, 64, 64), num_class_embeds=10,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"))
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer=optimizer, num_warmup_steps=500)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=0.75)
    generator = torch.Generator().manual_seed(0)

    step, start = 0, time.perf_counter()
    while time.perf_counter() - start < minutes * 60:
        index = torch.randint(0, len(images), (BATCH_SIZE,), generator=generator)
        clean, class_labels = images[index], labels[index]
        noise = torch.randn(clean.shape, generator=generator)
        timesteps = torch.randint(0, 1000, (BATCH_SIZE,), generator=generator)
        noisy = noise_scheduler.add_noise(clean, noise, timesteps)
        loss = F.mse_loss(unet(noisy, timesteps, class_labels=class_labels).sample, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        ema.step(unet.parameters())
        step += 1
    train_seconds = time.perf_counter() - start

    ema.copy_to(unet.parameters())
    unet.eval()
    sampler = DDIMScheduler.from_config(noise_scheduler.config)
    sampler.set_timesteps(50)
    sample_labels = _labels(num_samples)
    start = time.perf_counter()
    x = torch.randn(num_samples, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for t in sampler.timesteps:
            eps = unet(x, t, class_labels=torch.from_numpy(sample_labels)).sample
            x = sampler.step(eps, t, x).prev_sample
    return {"images": x.clamp(-1, 1), "labels": sample_labels, "steps": step, "train_seconds": train_seconds,
            "sample_seconds": time.perf_counter() - start, "sampler": "DDIM, 50 steps", "nfe": 50,
            "parameters": sum(p.numel() for p in unet.parameters())}


def train_ddpm(data: Path, run_dir: Path, minutes: float, num_samples: int) -> dict:
    from denoising_diffusion_pytorch import GaussianDiffusion, Trainer, Unet

    torch.manual_seed(0)
    model = Unet(dim=32, dim_mults=(1, 2, 2), channels=1)
    diffusion = GaussianDiffusion(model, image_size=16, timesteps=1000, sampling_timesteps=50)
    trainer = Trainer(diffusion, str(data), train_batch_size=BATCH_SIZE, augment_horizontal_flip=False,
                      save_and_sample_every=10**9, results_folder=str(run_dir / "results"), calculate_fid=False)
    start = time.perf_counter()
    while time.perf_counter() - start < minutes * 60:
        trainer.train_num_steps = trainer.step + 10  # Trainer has no time budget: train in short chunks
        trainer.train()
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    torch.manual_seed(0)
    with torch.no_grad():
        images = trainer.ema.ema_model.sample(batch_size=num_samples) * 2 - 1  # its samples lie in [0, 1]
    return {"images": images.clamp(-1, 1), "labels": None, "steps": trainer.step, "train_seconds": train_seconds,
            "sample_seconds": time.perf_counter() - start, "sampler": "DDIM, 50 steps", "nfe": 50,
            "parameters": sum(p.numel() for p in model.parameters())}


WORKERS = {"noisecraft": train_noisecraft, "diffusers": train_diffusers, "ddpm": train_ddpm}


def run_worker(system: str, data: Path, run_dir: Path, minutes: float, num_samples: int, threads: int) -> None:
    torch.set_num_threads(threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = WORKERS[system](data, run_dir, minutes, num_samples)
    np.save(run_dir / "samples.npy", out.pop("images").detach().cpu().float().numpy())
    labels = out.pop("labels")
    if labels is not None:
        np.save(run_dir / "labels.npy", labels)
    (run_dir / "worker.json").write_text(json.dumps(out | {"torch": torch.__version__}, indent=2))


# ------------------------------------------------------------------------------------------------- orchestrator


def prepare_data(out_dir: Path) -> tuple[Path, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Export the train split as an image folder (once) and return (folder, train images/labels, test images/labels)."""
    from noisecraft.images.data import digits_dataset, export_image_folder

    train, test = digits_dataset(16, split="train"), digits_dataset(16, split="test")
    folder = out_dir / "digits_train"
    if not folder.exists():
        export_image_folder(train, folder)
    return folder, train.images, torch.tensor(train.labels), test.images, torch.tensor(test.labels)


def launch(system: str, folder: Path, run_dir: Path, minutes: float, num_samples: int, threads: int) -> None:
    python = VENVS[system] / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(f"{python} is missing; create the peer environments with "
                                "`bash benchmarks/setup_peers.sh` from the repository root.")
    command = [str(python), __file__, "--worker", system, "--data", str(folder), "--run-dir", str(run_dir),
               "--minutes", str(minutes), "--num-samples", str(num_samples), "--threads", str(threads)]
    shutil.rmtree(run_dir, ignore_errors=True)  # every run trains from scratch
    run_dir.mkdir(parents=True)
    with open(run_dir / "log.txt", "w") as log:
        # Generous timeout: the budget plus setup and sampling; a hung worker must not hang the benchmark.
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=minutes * 60 + 1200)
    if completed.returncode != 0:
        raise RuntimeError(f"{system} worker failed (exit {completed.returncode}); see {run_dir / 'log.txt'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="training wall-clock budget per system")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--num-samples", type=int, default=0, help="samples per system (0: as many as test images)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of every worker (1: a second thread mostly waits on a shared machine)")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "time_to_quality")
    parser.add_argument("--reuse", action="store_true", help="evaluate existing runs in --out without training")
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return run_worker(args.worker, args.data, args.run_dir, args.minutes, args.num_samples, args.threads)

    torch.set_num_threads(args.threads)
    folder, train_images, train_labels, test_images, test_labels = prepare_data(args.out)
    num_samples = args.num_samples or len(test_images)
    info = machine_info()
    for system in args.systems:
        if not (args.reuse and (args.out / system / "samples.npy").exists()):
            print(f"training {system} for {args.minutes} min ...", flush=True)
            launch(system, folder, args.out / system, args.minutes, num_samples, args.threads)

    classifier = train_digits_classifier(train_images, train_labels, seed=0)
    test_features, test_predictions = classifier_outputs(classifier, test_images)
    n = min(num_samples, len(test_images))
    floor_index = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(0))[:n]
    floor_features, _ = classifier_outputs(classifier, train_images[floor_index])
    rows = [{"system": "real train images (floor)", "FD": frechet_distance(floor_features, test_features[:n]),
             "class acc": float((test_predictions == test_labels.numpy()).mean()), "sampler": "-"}]
    for system in args.systems:
        run_dir = args.out / system
        worker = json.loads((run_dir / "worker.json").read_text())
        samples = torch.from_numpy(np.load(run_dir / "samples.npy"))
        features, predictions = classifier_outputs(classifier, samples)
        labels_path = run_dir / "labels.npy"
        accuracy = float((predictions == np.load(labels_path)).mean()) if labels_path.exists() else float("nan")
        rows.append({"system": system, "FD": frechet_distance(features[:n], test_features[:n]), "class acc": accuracy,
                     "train steps": worker["steps"], "train s": worker["train_seconds"],
                     "params": worker["parameters"], "sampler": worker["sampler"], "NFE": worker["nfe"],
                     "sample s": worker["sample_seconds"], "torch": worker["torch"]})
    peers = [row["FD"] for row in rows if row["system"] in ("diffusers", "ddpm")]
    ours = [row["FD"] for row in rows if row["system"] == "noisecraft"]
    verdict = (f"noisecraft FD / best peer FD = {ours[0] / min(peers):.3f} (goal <= 0.5)" if ours and peers else "")
    table = markdown_table(rows, ["system", "FD", "class acc", "train steps", "train s", "params", "sampler", "NFE",
                                  "sample s", "torch"], float_format="{:.4g}")
    report = (f"machine: {info}\nbudget {args.minutes} min per system, batch {BATCH_SIZE}, {args.threads} thread(s); "
              f"FD on {n} real test images vs {n} samples; classifier test accuracy "
              f"{rows[0]['class acc']:.3f}\n\n{table}\n\n{verdict}")
    print(report)
    (args.out / "report.md").write_text(report + "\n")
    write_json({"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
               args.out / "report.json")


if __name__ == "__main__":
    main()
