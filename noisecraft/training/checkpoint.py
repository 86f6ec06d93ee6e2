"""Crash-safe checkpoints and the exported model folder.

Layout of a training run's ``out_dir``::

    out_dir/
      config.json, model.safetensors, ema.safetensors   final export: out_dir itself is a loadable model
      log.jsonl, loss.png
      checkpoints/
        latest                                          text file naming the newest checkpoint, e.g. "step_00001000"
        step_00001000/
          config.json        {"model_config": ..., "train_config": ..., "step": ...}
          model.safetensors  raw model state_dict
          ema.safetensors    EMA state_dict (float32)
          state.pt           optimizer, scheduler, step, data position, RNG states

A checkpoint is built in a hidden temporary directory inside ``checkpoints/`` with every file fsync'ed, then moved
into place with one ``os.replace`` (atomic on POSIX), after which ``latest`` is replaced atomically too. A crash at any
moment therefore leaves either the previous state or the new one, never a half-written checkpoint that ``latest``
points to.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from noisecraft.training.distributed import unwrap_model

CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "state.pt"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_TMP_PREFIX = ".tmp-"


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


# --- durable writes -------------------------------------------------------------------------------------------------

def _fsync_dir(path: Path) -> None:
    """Persist a directory's entries (renames, new files) so they survive a power cut, not just a process crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durable(path: Path, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one step: write a sibling temp file, fsync it, ``os.replace`` it over."""
    path = Path(path)
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.{os.getpid()}")
    try:
        _write_durable(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _safetensors_bytes(state_dict: Mapping[str, torch.Tensor]) -> bytes:
    # Fresh contiguous CPU copies: safetensors refuses tensors that share storage (tied weights, views).
    tensors = {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in state_dict.items()}
    return safetensors.torch.save(tensors, metadata={"format": "pt"})


def _config_bytes(*, model_config: dict, train_config: dict, step: int) -> bytes:
    config = {"model_config": model_config, "train_config": train_config, "step": step}
    return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode("utf-8")


# --- saving ---------------------------------------------------------------------------------------------------------

def save_checkpoint(out_dir: str | os.PathLike, step: int, *, model: nn.Module, model_config: dict,
                    train_config: dict, ema: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, training_state: dict | None = None, keep: int | None = None) -> Path:
    """Atomically write ``out_dir/checkpoints/step_<step>/``, point ``latest`` at it, keep the newest ``keep``.

    ``training_state``: extra resumable state stored in ``state.pt`` next to optimizer and scheduler (the trainer
    puts the data position and the RNG states there). Returns the checkpoint directory.
    """
    root = Path(out_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(root)
    name = checkpoint_name(step)
    files = {
        CONFIG_FILE: _config_bytes(model_config=model_config, train_config=train_config, step=step),
        MODEL_FILE: _safetensors_bytes(unwrap_model(model).state_dict()),
    }
    if ema is not None:
        files[EMA_FILE] = _safetensors_bytes(ema.state_dict())
    state = {"step": step, **(training_state or {})}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    files[STATE_FILE] = buffer.getvalue()

    tmp = root / f"{_TMP_PREFIX}{name}.{os.getpid()}"
    final = root / name
    try:
        tmp.mkdir()
        for file_name, data in files.items():
            _write_durable(tmp / file_name, data)
        _fsync_dir(tmp)
        if final.exists():
            # os.replace cannot overwrite a non-empty directory: move the old one aside first (same step saved twice).
            stale = root / f"{_TMP_PREFIX}old-{name}.{os.getpid()}"
            os.replace(final, stale)
            shutil.rmtree(stale)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(root)
    atomic_write_bytes(root / LATEST_FILE, (name + "\n").encode("utf-8"))
    if keep is not None:
        prune_checkpoints(out_dir, keep=keep)
    return final


def export_model(out_dir: str | os.PathLike, *, model: nn.Module, model_config: dict, train_config: dict, step: int,
                 ema: nn.Module | None = None) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (+ ``ema.safetensors``) at the top of ``out_dir``.

    Each file is replaced atomically; the weights go first and ``config.json`` last, so a folder with a
    ``config.json`` always holds complete weights.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / MODEL_FILE, _safetensors_bytes(unwrap_model(model).state_dict()))
    if ema is not None:
        atomic_write_bytes(out_dir / EMA_FILE, _safetensors_bytes(ema.state_dict()))
    atomic_write_bytes(out_dir / CONFIG_FILE,
                       _config_bytes(model_config=model_config, train_config=train_config, step=step))
    return out_dir


def _remove_stale_temporaries(root: Path) -> None:
    """Delete leftovers of saves that were killed before their final rename."""
    for path in root.glob(f"{_TMP_PREFIX}*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def list_checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoint directories under ``out_dir/checkpoints``, oldest first."""
    root = Path(out_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in root.iterdir()
             if (match := _STEP_DIR.match(path.name)) and (path / CONFIG_FILE).is_file()]
    return [path for _, path in sorted(found)]


def prune_checkpoints(out_dir: str | os.PathLike, *, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints (never the one ``latest`` names). Returns the deleted paths."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    latest = latest_checkpoint(out_dir)
    doomed = [path for path in list_checkpoints(out_dir)[:-keep] if path != latest]
    for path in doomed:
        shutil.rmtree(path)
    return doomed


# --- loading --------------------------------------------------------------------------------------------------------

def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``out_dir/checkpoints/latest`` names, else the newest complete one, else ``None``."""
    root = Path(out_dir) / CHECKPOINTS_DIR
    latest_file = root / LATEST_FILE
    if latest_file.is_file():
        candidate = root / latest_file.read_text(encoding="utf-8").strip()
        if _STEP_DIR.match(candidate.name) and (candidate / CONFIG_FILE).is_file():
            return candidate
    # A crash between the directory rename and the `latest` update leaves a complete, newer directory behind.
    checkpoints = list_checkpoints(out_dir)
    return checkpoints[-1] if checkpoints else None


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """The folder holding ``config.json`` + weights for ``path``: a checkpoint directory, a training ``out_dir`` (its
    top-level export, else its latest checkpoint) or a ``config.json`` file."""
    path = Path(path)
    if path.is_file() and path.name == CONFIG_FILE:
        path = path.parent
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    exported = path if (path / CONFIG_FILE).is_file() and (path / MODEL_FILE).is_file() else None
    checkpoint = latest_checkpoint(path)
    if exported is not None and checkpoint is not None:
        # A resumed run keeps checkpointing after an earlier export: the higher step is the current model.
        return checkpoint if _config_step(checkpoint) > _config_step(exported) else exported
    if exported is not None or checkpoint is not None:
        return exported or checkpoint
    raise FileNotFoundError(
        f"no model found in {path}: expected {CONFIG_FILE} and {MODEL_FILE} (a checkpoint directory or a finished "
        f"training out_dir) or a {CHECKPOINTS_DIR}/ folder with at least one checkpoint"
    )


def _config_step(folder: Path) -> int:
    return int(json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8")).get("step", -1))


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint directory or training ``out_dir`` (see :func:`resolve_model_dir`)."""
    config_path = resolve_model_dir(path) / CONFIG_FILE
    try:
        return json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{config_path} is not valid JSON ({error}); the file is corrupt") from None


def _load_tensors_into(module: nn.Module, tensors: dict[str, torch.Tensor], *, source: Path, strict: bool) -> None:
    """``module.load_state_dict`` with an error that names the mismatching keys instead of torch's traceback."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    reshaped = sorted(name for name in set(expected) & set(tensors) if expected[name].shape != tensors[name].shape)
    if reshaped or (strict and (missing or unexpected)):
        details = [f"{label}: {names[:10]}{' ...' if len(names) > 10 else ''}"
                   for label, names in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", reshaped))
                   if names]
        raise ValueError(f"weights in {source} do not fit the model ({'; '.join(details)}); build the model from "
                         f"the checkpoint's config.json model_config, or pass strict=False to load a subset")
    module.load_state_dict(tensors, strict=strict)


def load_weights(model: nn.Module, path: str | os.PathLike, *, use_ema: bool = True, strict: bool = True) -> dict:
    """Load weights into ``model`` from a checkpoint directory or a training ``out_dir``; returns its config.

    ``use_ema=True`` prefers ``ema.safetensors`` (the weights to sample with) and falls back to ``model.safetensors``
    when the folder has no EMA, with a warning unless that file's metadata says it holds EMA weights
    (``{"weights": "ema"}``, as in sampling-only exports such as the shipped text-to-image model).
    """
    folder = resolve_model_dir(path)
    weights = folder / (EMA_FILE if use_ema else MODEL_FILE)
    if use_ema and not weights.is_file():
        weights = folder / MODEL_FILE
        with safetensors.safe_open(weights, framework="pt") as handle:
            holds_ema = (handle.metadata() or {}).get("weights") == "ema"
        if not holds_ema:
            warnings.warn(f"{folder} has no {EMA_FILE}; loading the raw weights from {MODEL_FILE}", stacklevel=2)
    _load_tensors_into(unwrap_model(model), safetensors.torch.load_file(weights), source=weights, strict=strict)
    return read_config(folder)


def load_checkpoint(path: str | os.PathLike, model: nn.Module, ema: nn.Module | None = None,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None, *,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Restore everything a checkpoint holds into the given objects (those passed as ``None`` are skipped).

    Returns the rest of ``state.pt`` (``step`` and the trainer's ``training_state`` entries) plus ``"config"``.
    """
    path = Path(path)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint directory (no {STATE_FILE}); "
                                f"use latest_checkpoint(out_dir) to find one, or load_weights() for weights only")
    _load_tensors_into(unwrap_model(model), safetensors.torch.load_file(path / MODEL_FILE),
                       source=path / MODEL_FILE, strict=True)
    if ema is not None:
        _load_tensors_into(ema, safetensors.torch.load_file(path / EMA_FILE), source=path / EMA_FILE, strict=True)
    state = torch.load(path / STATE_FILE, map_location=map_location, weights_only=True)
    optimizer_state, scheduler_state = state.pop("optimizer", None), state.pop("scheduler", None)
    if optimizer is not None:
        if optimizer_state is None:
            raise ValueError(f"{path / STATE_FILE} holds no optimizer state")
        optimizer.load_state_dict(optimizer_state)
    if scheduler is not None:
        if scheduler_state is None:
            raise ValueError(f"{path / STATE_FILE} holds no scheduler state")
        scheduler.load_state_dict(scheduler_state)
    state["config"] = read_config(path)
    return state
