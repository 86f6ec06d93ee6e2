"""Shared trainer for every modality: optimisation, EMA, checkpoints, resume, DDP and logs."""

from noisecraft.training.checkpoint import (
    export_model,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_weights,
    read_config,
    resolve_model_dir,
    save_checkpoint,
)
from noisecraft.training.ema import ema_decay, make_ema, update_ema
from noisecraft.training.trainer import NonFiniteLossError, Trainer, TrainConfig, TrainResult

__all__ = [
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "ema_decay",
    "export_model",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_weights",
    "make_ema",
    "read_config",
    "resolve_model_dir",
    "save_checkpoint",
    "update_ema",
]
