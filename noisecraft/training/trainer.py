"""The training loop shared by every modality.

A modality hands over a model (a denoiser ``nn.Module``), a ``loss_fn(model, batch, generator) -> loss [B]``, a
map-style dataset and a :class:`TrainConfig`; the trainer owns everything else: AdamW with linear warm-up, gradient
clipping and accumulation, the EMA copy, bf16 autocast, deterministic resumable data order, checkpoints, signals,
logs and DDP. Randomness is reproducible: a resumed run produces bit-identical weights to an uninterrupted one (on
CPU, for the same number of processes).

Data order: a deterministic stream of epoch permutations whose position is one integer, ``samples_seen``
(``noisecraft.training.data``). One optimizer step sees ``batch_size * grad_accum * world_size`` examples.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import default_collate
from tqdm.auto import tqdm

from noisecraft.jsonconfig import from_dict
from noisecraft.training.checkpoint import (
    CHECKPOINTS_DIR,
    checkpoint_name,
    export_model,
    latest_checkpoint,
    load_checkpoint,
    read_config,
    save_checkpoint,
)
from noisecraft.training.data import (  # noqa: F401 (epoch_permutation, index_batches re-exported)
    DeviceCache,
    batch_stream,
    epoch_permutation,
    index_batches,
)
from noisecraft.training.distributed import (
    DistributedContext,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    init_distributed,
    shutdown_distributed,
    wrap_model,
)
from noisecraft.training.ema import ema_decay, make_ema, update_ema
from noisecraft.training.logging import JsonlLogger, plot_loss_curve
from noisecraft.training.lr_schedule import LR_DECAYS, lr_factor
from noisecraft.training.rng import capture_rng, restore_rng
from noisecraft.training.signals import StopSignals

LossFn = Callable[[nn.Module, Any, torch.Generator], torch.Tensor]
SampleFn = Callable[[nn.Module, int, Path], "Mapping[str, Any] | None"]

# Train-config fields that may change between a run and its resumption without changing the steps already taken
# (``compile`` changes floating-point rounding only; ``steps`` and the decay fields re-plan the learning rate of the
# steps still to come, e.g. a constant-rate run extended, then cooled down over its last steps).
RESUMABLE_CHANGES = frozenset(
    {"steps", "max_minutes", "log_every", "sample_every", "checkpoint_every", "keep_checkpoints", "num_workers",
     "cache_on_device", "compile", "lr_decay", "lr_decay_steps", "lr_min_ratio"})


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping settings (JSON-able; stored in every checkpoint's ``config.json``).

    ``batch_size`` is per process and per micro-batch: an optimizer step averages over
    ``batch_size * grad_accum * world_size`` examples. ``checkpoint_every=0`` / ``sample_every=0`` disable the
    periodic checkpoint / sample hook (a checkpoint is still written when training stops).
    """

    steps: int = 10_000
    batch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 500
    # Learning-rate decay after warm-up ("none", "linear" or "cosine") down to lr * lr_min_ratio at the last step,
    # spread over the last lr_decay_steps steps (0: all steps after warm-up). A constant rate followed by a short
    # decay is the warmup-stable-decay schedule (Hägele et al. 2024, arXiv:2405.18392), which allows extending a run.
    lr_decay: str = "none"
    lr_decay_steps: int = 0
    lr_min_ratio: float = 0.0
    grad_clip: float | None = 1.0
    grad_accum: int = 1
    ema_decay: float = 0.999
    ema_warmup: bool = True  # decay_t = min(ema_decay, (1 + t) / (10 + t)), see noisecraft.training.ema
    bf16: bool = False  # torch.autocast(bfloat16) around loss_fn
    seed: int = 0
    num_workers: int = 0
    # Read every example once and keep the collated data set on the training device (it must fit there): removes
    # the per-step loading, rendering and host-to-device copy; same batches, same results.
    cache_on_device: bool = False
    # torch.compile the model for the training forward and backward (faster after a one-off compilation of a few
    # minutes; the saved weights, the EMA copy and sampling use the plain module).
    compile: bool = False
    log_every: int = 50
    sample_every: int = 0
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    max_minutes: float | None = None  # wall-clock budget of one fit() call; stops with a checkpoint when spent

    def __post_init__(self) -> None:
        checks = {  # description -> (test, fields); bool is excluded from the numbers as True == 1 in Python
            "an int": (lambda v: isinstance(v, int) and not isinstance(v, bool),
                       ("steps", "batch_size", "warmup_steps", "lr_decay_steps", "grad_accum", "seed", "num_workers",
                        "log_every", "sample_every", "checkpoint_every", "keep_checkpoints")),
            "a number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
                         ("lr", "weight_decay", "ema_decay", "grad_clip", "max_minutes", "lr_min_ratio")),
            "True or False": (lambda v: isinstance(v, bool), ("ema_warmup", "bf16", "cache_on_device", "compile")),
        }
        for kind, (test, names) in checks.items():
            for name in names:
                value = getattr(self, name)
                optional = name in ("grad_clip", "max_minutes")
                if not (test(value) or (optional and value is None)):
                    raise TypeError(f"TrainConfig.{name} must be {kind}{' or None' if optional else ''}, "
                                    f"got {value!r}")
        if not (isinstance(self.betas, (tuple, list)) and len(self.betas) == 2
                and all(isinstance(b, (int, float)) and 0.0 <= b < 1.0 for b in self.betas)):
            raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = tuple(float(b) for b in self.betas)
        minimum = {"steps": 1, "batch_size": 1, "grad_accum": 1, "log_every": 1, "keep_checkpoints": 1,
                   "warmup_steps": 0, "lr_decay_steps": 0, "seed": 0, "num_workers": 0, "sample_every": 0,
                   "checkpoint_every": 0, "weight_decay": 0.0}
        for name, low in minimum.items():
            if getattr(self, name) < low:
                raise ValueError(f"TrainConfig.{name} must be >= {low}, got {getattr(self, name)}")
        for name in ("lr", "grad_clip", "max_minutes"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ValueError(f"TrainConfig.{name} must be > 0 (or None where allowed), got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"TrainConfig.lr_decay must be one of {', '.join(LR_DECAYS)}, got {self.lr_decay!r}")
        if self.lr_decay_steps > self.steps:
            raise ValueError(f"TrainConfig.lr_decay_steps ({self.lr_decay_steps}) exceeds steps ({self.steps})")
        if not 0.0 <= self.lr_min_ratio <= 1.0:
            raise ValueError(f"TrainConfig.lr_min_ratio must lie in [0, 1], got {self.lr_min_ratio}")

    def to_dict(self) -> dict[str, Any]:
        config = asdict(self)
        config["betas"] = list(self.betas)  # JSON has no tuples
        return config

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        return from_dict(cls, data)


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns. ``wall_time``: seconds spent in this call. ``reason``: ``"completed"``,
    ``"signal:SIGINT"``/``"signal:SIGTERM"`` (then ``interrupted`` is True) or ``"time_limit"``."""

    step: int
    loss: float | None
    out_dir: Path
    checkpoint: Path | None
    log_path: Path
    wall_time: float
    interrupted: bool
    reason: str


class NonFiniteLossError(FloatingPointError):
    """The loss (or gradient norm) became NaN/inf; raised before the optimizer step, so no garbage is saved."""


def _json_normalized(value: Any, *, what: str) -> Any:
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as error:
        raise TypeError(f"{what} must be JSON-serialisable (plain dicts, lists, str, numbers): {error}") from None


def _differing_keys(new: Any, old: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON values differ."""
    if isinstance(new, dict) and isinstance(old, dict):
        return [path for key in sorted(set(new) | set(old))
                for path in _differing_keys(new.get(key), old.get(key), f"{prefix}{key}.")]
    return [] if new == old else [prefix.rstrip(".") or "<root>"]


class Trainer:
    """Trains ``model`` by minimising ``loss_fn`` over ``dataset``; see the module docstring for the data order.

    Args:
        model: the denoiser to train (moved to the training device in :meth:`fit`).
        loss_fn: ``loss_fn(model, batch, generator) -> losses [B]``; all its randomness must come from
            ``generator`` (seeded ``seed + rank``, saved in checkpoints). Under DDP it receives the wrapped model.
        dataset: map-style (``len`` and integer indexing); batches are ``collate_fn([dataset[i] for i in indices])``.
        config: a :class:`TrainConfig`.
        out_dir: run folder for ``log.jsonl``, ``loss.png``, ``checkpoints/`` and the final export.
        model_config: JSON-able description of the model, written verbatim into every ``config.json``.
        sample_fn: ``sample_fn(ema_model, step, out_dir) -> metrics | None`` every ``sample_every`` steps on rank 0;
            it runs under its own RNG fork, so sampling never changes the training randomness.
        collate_fn: defaults to ``torch.utils.data.default_collate``.
        progress: show a tqdm bar (rank 0).
        device: ``None`` = ``cuda:LOCAL_RANK`` when available, else CPU.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, dataset: Any, config: TrainConfig,
                 out_dir: str | os.PathLike, *, model_config: dict, sample_fn: SampleFn | None = None,
                 collate_fn: Callable | None = None, progress: bool = True, device: str | torch.device | None = None):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError("model has no trainable parameters (none with requires_grad=True)")
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig (use TrainConfig.from_dict for dicts), "
                            f"got {type(config).__name__}")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable as loss_fn(model, batch, generator), got {loss_fn!r}")
        for name, fn in (("sample_fn", sample_fn), ("collate_fn", collate_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(f"dataset must be map-style (support len() and dataset[i]), got {type(dataset).__name__}")
        if len(dataset) == 0:
            raise ValueError("dataset is empty")
        if not isinstance(model_config, dict):
            raise TypeError(f"model_config must be a dict, got {type(model_config).__name__}")
        self.model = model
        self.loss_fn = loss_fn
        self.dataset = dataset
        self.config = config
        self.out_dir = Path(out_dir)
        self.model_config = _json_normalized(model_config, what="model_config")
        self.sample_fn = sample_fn
        self.collate_fn = collate_fn or default_collate
        self.progress = progress
        self.device = device
        self.ema: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.generator: torch.Generator | None = None
        self.step = 0
        self._wall_time_before = 0.0  # training time of earlier runs this one resumes
        self._logger: JsonlLogger | None = None

    @property
    def log_path(self) -> Path:
        return self.out_dir / "log.jsonl"

    def fit(self, resume: bool = False) -> TrainResult:
        """Train up to ``config.steps`` optimizer steps and export the final model at the top of ``out_dir``.

        ``resume=True`` continues from the latest checkpoint (``FileNotFoundError`` if there is none,
        ``ValueError`` naming the keys if the model or optimisation config differs). ``resume=False`` refuses an
        ``out_dir`` that already holds checkpoints (``FileExistsError``). SIGINT/SIGTERM or the ``max_minutes`` budget
        end training after the current step with a checkpoint and a normal return (``result.interrupted`` /
        ``result.reason``). A NaN/inf loss raises :class:`NonFiniteLossError` naming the step.
        """
        context = init_distributed(self.device)
        try:
            return self._fit(context, resume=resume)
        finally:
            shutdown_distributed(context)

    # --- setup ------------------------------------------------------------------------------------------------------

    def _setup(self, context: DistributedContext, *, resume: bool) -> int:
        """Build optimizer, scheduler, EMA and generator, restore them when resuming; returns ``samples_seen``."""
        config = self.config
        self.model.to(context.device).train()
        self.ema = make_ema(self.model)
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=config.lr,
                                           betas=config.betas, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, partial(lr_factor, steps=config.steps, warmup_steps=config.warmup_steps,
                                    decay=config.lr_decay, decay_steps=config.lr_decay_steps,
                                    min_ratio=config.lr_min_ratio))
        self.generator = torch.Generator(device=context.device).manual_seed(config.seed + context.rank)
        self.step, self._wall_time_before = 0, 0.0
        checkpoint = latest_checkpoint(self.out_dir)
        if not resume:
            if checkpoint is not None:
                raise FileExistsError(f"{self.out_dir} already holds checkpoints (latest: {checkpoint.name}): "
                                      "continue it with --resume (Python: resume=True) or choose a new --out "
                                      "(Python: out_dir)")
            return 0
        if checkpoint is None:
            raise FileNotFoundError(f"cannot resume: no checkpoint in {self.out_dir / CHECKPOINTS_DIR}; start without "
                                    "--resume (Python: resume=False); a checkpoint is written every "
                                    "--checkpoint-every steps and when training stops")
        # Compare configs before touching weights: a different model would otherwise fail with a shape error.
        self._check_resumable(read_config(checkpoint), checkpoint=checkpoint)
        state = load_checkpoint(checkpoint, self.model, self.ema, self.optimizer, self.scheduler)
        missing = sorted({"samples_seen", "wall_time", "world_size", "rng"} - set(state))
        if missing:
            raise ValueError(f"{checkpoint} was not written by Trainer (state.pt lacks {missing}) and cannot be "
                             "resumed; start a new out_dir and initialise the model with load_weights()")
        self.step, self._wall_time_before = state["step"], state["wall_time"]
        # The restored rate was planned by the saved config; re-plan this step's from ours (decay may have changed).
        for group, base_lr, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs,
                                          self.scheduler.lr_lambdas):
            group["lr"] = base_lr * factor(self.scheduler.last_epoch)
        restored = state["world_size"] == context.world_size
        if restored:
            try:
                restore_rng(state["rng"][context.rank], self.generator)
            except RuntimeError:  # a generator state from another device type (e.g. a CPU run resumed on CUDA)
                restored = False
        if not restored:
            # Per-rank random streams cannot be split, merged or moved between devices.
            warnings.warn(f"cannot restore the random streams of {checkpoint} (written by {state['world_size']} "
                          f"process(es), now {context.world_size} on {context.device.type}); they are reseeded, so "
                          "training continues correctly but not bit-identically", stacklevel=3)
            self.generator.manual_seed(int(np.random.SeedSequence([config.seed, context.rank, self.step])
                                           .generate_state(1)[0]))
        self._say(f"resumed from {checkpoint} (step {self.step})", context)
        return state["samples_seen"]

    def _check_resumable(self, saved: dict, *, checkpoint: Path) -> None:
        model_diff = _differing_keys(self.model_config, saved.get("model_config"))
        if model_diff:
            raise ValueError(f"cannot resume from {checkpoint}: model_config differs in {model_diff}; resume with "
                             "the run's own settings, or start a new --out (Python: out_dir)")
        train_diff = [key for key in _differing_keys(self.config.to_dict(), saved.get("train_config"))
                      if key not in RESUMABLE_CHANGES]
        if train_diff:
            raise ValueError(f"cannot resume from {checkpoint}: TrainConfig differs in {train_diff} (only "
                             f"{sorted(RESUMABLE_CHANGES)} may change on resume); start a new --out (Python: "
                             "out_dir) instead")

    def _say(self, message: str, context: DistributedContext) -> None:
        if context.is_main and self.progress:
            tqdm.write(message, file=sys.stderr)

    # --- the loop ---------------------------------------------------------------------------------------------------

    def _fit(self, context: DistributedContext, *, resume: bool) -> TrainResult:
        config, started = self.config, time.monotonic()
        samples_seen = self._setup(context, resume=resume)
        model = wrap_model(self.model, context)
        if config.compile:
            # Compiles on the first step (and once more if input shapes vary, which then become dynamic).
            model = torch.compile(model)
        samples_per_step = config.batch_size * config.grad_accum * context.world_size
        saved_step = self.step if resume else None
        loss, reason = None, "completed"
        self._logger = JsonlLogger(self.log_path, resume_step=self.step if resume else None) \
            if context.is_main else None
        batches, bar = None, tqdm(total=config.steps, initial=self.step, unit="step", dynamic_ncols=True,
                                  disable=not (self.progress and context.is_main))
        try:
            cache = self._cache_data(context) if config.cache_on_device else None
            batches = batch_stream(self.dataset, collate_fn=self.collate_fn, device=context.device,
                                   seed=config.seed, start=samples_seen, batch_size=config.batch_size,
                                   rank=context.rank, world_size=context.world_size,
                                   num_workers=config.num_workers, cache=cache)
            window_losses, window_start, window_step = [], time.monotonic(), self.step
            with StopSignals() as signals:

                def stop_flags() -> tuple[bool, bool]:
                    """(signal received, time budget spent), read as late as possible within a step."""
                    elapsed = time.monotonic() - started
                    return signals.received is not None, config.max_minutes is not None and \
                        elapsed > 60 * config.max_minutes

                while self.step < config.steps:
                    lr = self.optimizer.param_groups[0]["lr"]
                    loss, grad_norm, stop = self._train_step(model, batches, context, stop_flags=stop_flags)
                    self.step += 1
                    samples_seen += samples_per_step
                    window_losses.append(loss)
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
                    if self.step % config.log_every == 0 and self._logger is not None:
                        now = time.monotonic()
                        self._logger.log({"kind": "train", "step": self.step,
                                          "epoch": samples_seen / len(self.dataset),
                                          "loss": sum(window_losses) / len(window_losses), "lr": lr,
                                          "grad_norm": grad_norm,
                                          "it_per_s": (self.step - window_step) / max(now - window_start, 1e-9),
                                          "wall_time": self._wall_time_before + now - started})
                        window_losses, window_start, window_step = [], now, self.step
                    if self.sample_fn is not None and config.sample_every and self.step % config.sample_every == 0:
                        self._sample(context)
                    if stop is not None:
                        reason = stop if stop == "time_limit" else f"signal:{signals.received or 'other rank'}"
                        break
                    if config.checkpoint_every and self.step % config.checkpoint_every == 0:
                        self._save(context, samples_seen=samples_seen, started=started)
                        saved_step = self.step
                if saved_step != self.step:
                    self._save(context, samples_seen=samples_seen, started=started)
        finally:
            bar.close()
            del batches  # shuts down DataLoader workers
            if self._logger is not None:
                self._logger.close()
        checkpoint = self.out_dir / CHECKPOINTS_DIR / checkpoint_name(self.step)
        if context.is_main:
            export_model(self.out_dir, model=self.model, ema=self.ema, model_config=self.model_config,
                         train_config=config.to_dict(), step=self.step)
            plot_loss_curve(self._logger.records, self.out_dir / "loss.png")
        barrier(context)
        if reason != "completed":
            self._say(f"stopped at step {self.step} ({reason}); continue with --resume (Python: resume=True)",
                      context)
        return TrainResult(step=self.step, loss=loss, out_dir=self.out_dir, checkpoint=checkpoint,
                           log_path=self.log_path, wall_time=time.monotonic() - started,
                           interrupted=reason.startswith("signal"), reason=reason)

    def _cache_data(self, context: DistributedContext) -> DeviceCache:
        """The whole data set on the training device (``cache_on_device``); its size and time go to the log."""
        start = time.monotonic()
        cache = DeviceCache(self.dataset, collate_fn=self.collate_fn, device=context.device,
                            num_workers=self.config.num_workers, progress=self.progress and context.is_main)
        seconds = time.monotonic() - start
        self._say(f"cached {cache.num_items} examples ({cache.nbytes() / 2**30:.2f} GiB) on {context.device} "
                  f"in {seconds:.0f} s", context)
        if self._logger is not None:
            self._logger.log({"kind": "data_cache", "step": self.step, "examples": cache.num_items,
                              "bytes": cache.nbytes(), "seconds": seconds})
        return cache

    def _train_step(self, model: nn.Module, batches: Iterator, context: DistributedContext, *,
                    stop_flags: Callable[[], tuple[bool, bool]]) -> tuple[float, float, str | None]:
        """One optimizer step over ``grad_accum`` micro-batches; returns ``(loss, grad_norm, stop reason)``.

        Loss, non-finite flag and stop requests travel in one all-reduce, so every rank agrees on whether to step,
        raise or stop, and the host synchronises once per step.
        """
        config, device = self.config, context.device
        loss_sum = torch.zeros((), device=device)
        non_finite = torch.zeros((), device=device)
        for micro in range(config.grad_accum):
            batch = next(batches)
            # Under DDP only the last micro-batch all-reduces gradients; the others accumulate locally.
            last = micro == config.grad_accum - 1
            ddp = getattr(model, "_orig_mod", model)  # below torch.compile's wrapper, if any
            sync = nullcontext() if last or not isinstance(ddp, DistributedDataParallel) else ddp.no_sync()
            with sync:
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=config.bf16):
                    losses = self.loss_fn(model, batch, self.generator)
                if not isinstance(losses, torch.Tensor) or losses.ndim != 1:
                    shape = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
                    raise ValueError(f"loss_fn must return per-example losses of shape [B], got {shape}; "
                                     "return the unreduced loss (the trainer takes the mean)")
                loss = losses.float().mean()
                # Dividing by grad_accum makes the accumulated gradient that of the mean over all micro-batches.
                (loss / config.grad_accum).backward()
            loss_sum += loss.detach()
            non_finite += (~torch.isfinite(loss.detach())).float()
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_norm=config.grad_clip or math.inf)
        flags = torch.tensor([float(flag) for flag in stop_flags()], device=device)
        shared = all_reduce_sum(torch.cat([loss_sum.reshape(1), non_finite.reshape(1), flags]), context)
        # A stop request on any rank stops them all at this same step.
        loss_total, non_finite_count, any_signalled, any_out_of_time, grad_norm = \
            torch.cat([shared, grad_norm.reshape(1).to(device)]).tolist()
        loss = loss_total / (config.grad_accum * context.world_size)
        if non_finite_count or not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            what = f"loss is {loss}" if non_finite_count else f"gradient norm is {grad_norm}"
            raise NonFiniteLossError(f"non-finite training at step {self.step + 1}: {what}; nothing was saved for "
                                     f"this step (try a lower lr, grad_clip, or bf16=False)")
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        update_ema(self.ema, self.model, decay=ema_decay(self.step, decay=config.ema_decay,
                                                         warmup=config.ema_warmup))
        stop_reason = "signal" if any_signalled else "time_limit" if any_out_of_time else None
        return loss, grad_norm, stop_reason

    # --- hooks ------------------------------------------------------------------------------------------------------

    def _sample(self, context: DistributedContext) -> None:
        if not context.is_main:
            return
        devices = [context.device] if context.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            metrics = self.sample_fn(self.ema, self.step, self.out_dir)
        if metrics is not None and not isinstance(metrics, Mapping):
            raise TypeError(f"sample_fn must return a dict of metrics or None, got {type(metrics).__name__}")
        if metrics:
            self._logger.log({"kind": "sample", "step": self.step, **dict(metrics)})

    def _save(self, context: DistributedContext, *, samples_seen: int, started: float) -> None:
        """Checkpoint on rank 0 with every rank's RNG state; all ranks wait until it is on disk."""
        rng = all_gather_objects(capture_rng(self.generator), context)
        if context.is_main:
            training_state = {"samples_seen": samples_seen, "world_size": context.world_size, "rng": rng,
                              "wall_time": self._wall_time_before + time.monotonic() - started}
            save_checkpoint(self.out_dir, self.step, model=self.model, ema=self.ema, optimizer=self.optimizer,
                            scheduler=self.scheduler, model_config=self.model_config,
                            train_config=self.config.to_dict(), training_state=training_state,
                            keep=self.config.keep_checkpoints)
            plot_loss_curve(self._logger.records, self.out_dir / "loss.png")
        barrier(context)
