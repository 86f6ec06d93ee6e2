"""Train the toy denoiser in its own process (single or under torchrun); used by the subprocess trainer tests.

Writes ``<out>/result_rank<r>.json`` with the outcome and hashes of the model and EMA weights this rank holds.
``--slow-after S --delay D`` makes every step after S sleep D seconds, so a test can signal or kill the process
mid-training after a checkpoint has been written.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from trainer_toy import MODEL_CONFIG, RingDataset, ToyDenoiser, denoising_loss, evaluation_loss, state_hash

from noisecraft.training import TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--slow-after", type=int, default=None)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()

    torch.manual_seed(0)  # same initial weights in every run and on every rank
    model = ToyDenoiser(hidden=MODEL_CONFIG["hidden"])
    initial_loss = evaluation_loss(model)
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=1e-2, warmup_steps=5, log_every=5,
                         checkpoint_every=args.checkpoint_every, ema_decay=0.9, seed=3)
    calls = 0

    def loss_fn(model, batch, generator):
        nonlocal calls
        calls += 1
        if args.slow_after is not None and calls > args.slow_after:
            time.sleep(args.delay)
        return denoising_loss(model, batch, generator)

    trainer = Trainer(model, loss_fn, RingDataset(), config, args.out, model_config=MODEL_CONFIG, progress=False,
                      device="cpu")
    result = trainer.fit(resume=args.resume)
    rank = int(os.environ.get("RANK", 0))
    summary = {"step": result.step, "loss": result.loss, "reason": result.reason, "interrupted": result.interrupted,
               "loss_calls": calls, "initial_eval_loss": initial_loss,
               "final_eval_loss": evaluation_loss(trainer.model),
               "model": state_hash(trainer.model), "ema": state_hash(trainer.ema)}
    (args.out / f"result_rank{rank}.json").write_text(json.dumps(summary))


if __name__ == "__main__":
    main()
