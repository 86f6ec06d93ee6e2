"""What every modality's training entry does around the shared :class:`~noisecraft.training.Trainer`: check the
run folder before anything is written into it, and turn the modality's config dict into a :class:`TrainConfig`.

A modality's config names its budget as ``steps`` or ``minutes`` and carries ``batch_size``, ``lr``, ``seed`` and
``train`` (any TrainConfig field, which wins); the modality chooses the rest (checkpoint interval, warm-up cap).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from noisecraft.training.checkpoint import latest_checkpoint, read_config
from noisecraft.training.trainer import TrainConfig

DEFAULT_STEPS = 20_000  # when neither steps nor minutes is given
UNBOUNDED_STEPS = 1_000_000  # a ``minutes`` budget: the clock stops the run, not the step count


def run_checkpoint(out_dir: str | Path, *, resume: bool) -> Path | None:
    """The latest checkpoint in ``out_dir``, checked before the caller writes into the folder (a tokenizer, a
    schema): a folder holding checkpoints needs ``resume``, and ``resume`` needs a checkpoint."""
    out_dir = Path(out_dir)
    checkpoint = latest_checkpoint(out_dir) if out_dir.is_dir() else None
    if checkpoint is not None and not resume:
        raise FileExistsError(f"{out_dir} already holds checkpoints (latest: {checkpoint.name}): continue it with "
                              f"--resume (Python: resume=True) or choose a new --out (Python: out_dir)")
    if checkpoint is None and resume:
        raise FileNotFoundError(f"cannot resume: {out_dir} holds no checkpoint; start without --resume "
                                f"(Python: resume=False)")
    return checkpoint


def train_config_for(config: dict[str, Any], *, checkpoint: Path | None = None, warmup_cap: int = 500,
                     checkpoint_every: int = 500, log_cap: int = 50, ema_decay: float = 0.999) -> TrainConfig:
    """The TrainConfig of a modality's ``config``. Warm-up: a tenth of the steps, at most ``warmup_cap``; a resumed
    run (``checkpoint``) keeps the warm-up its first run planned, so changing ``steps`` only moves the end."""
    steps = config.get("steps") or (UNBOUNDED_STEPS if config.get("minutes") is not None else DEFAULT_STEPS)
    overrides = dict(config.get("train") or {})
    train = {"steps": steps, "batch_size": config["batch_size"], "lr": config["lr"], "seed": config["seed"],
             "warmup_steps": min(warmup_cap, max(1, steps // 10)), "ema_decay": ema_decay,
             "checkpoint_every": checkpoint_every, "log_every": max(1, min(log_cap, steps // 10)),
             "max_minutes": config.get("minutes"), **overrides}
    if checkpoint is not None and "warmup_steps" not in overrides:
        saved = (read_config(checkpoint).get("train_config") or {}).get("warmup_steps")
        if saved is not None:
            train["warmup_steps"] = saved
    return TrainConfig.from_dict(train)


def with_defaults(config: dict[str, Any], defaults: dict[str, Any], *, what: str) -> dict[str, Any]:
    """``config`` over ``defaults``; a config that is not a dict, unknown keys and a missing ``out_dir`` are named
    in one-line errors (``what``: "text training", ...)."""
    if not isinstance(config, dict):
        raise TypeError(f"a {what} config is a dict, got {type(config).__name__}")
    unknown = sorted(set(config) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {what} option(s) {', '.join(map(repr, unknown))}; known: "
                         f"{', '.join(defaults)} (TrainConfig fields go under 'train')")
    config = {**defaults, **config}
    if config.get("out_dir") is None:
        raise ValueError(f"a {what} config needs 'out_dir' (the model folder to write)")
    check_positive_ints(config, ("steps",), optional=True)
    minutes = config.get("minutes")
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes <= 0):
        raise ValueError(f"minutes must be a positive number, got {minutes!r}")
    return config


def check_positive_ints(config: dict[str, Any], keys, *, optional: bool = False) -> None:
    """Each of ``keys`` is a positive integer (or None, when ``optional``), else a one-line error naming it."""
    for key in keys:
        value = config.get(key)
        if optional and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
