"""Fitting, saving, loading and sampling a tabular diffusion model.

A model directory is a shared-trainer output directory (``config.json``, ``model.safetensors``,
``ema.safetensors``, ``checkpoints/``, ``log.jsonl``) plus ``transforms.json``: the fitted column schema and
encoders, as plain JSON.
"""

from __future__ import annotations

import copy
import json
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from noisecraft import __version__
from noisecraft.device import resolve_device
from noisecraft.diffusion.samplers import SAMPLERS
from noisecraft.protocol import Generation, Param, Pipeline, StepReporter
from noisecraft.training import TrainConfig, Trainer, export_model, load_weights, read_config
from noisecraft.training.checkpoint import atomic_write_bytes, resolve_model_dir

from .diffusion import JointProcess, TabularDenoiser, joint_loss, sample_rows
from .io import as_frame
from .net import TabularNet
from .schema import infer_schema
from .transforms import TableCodec

TRANSFORMS_FILE = "transforms.json"
MODEL_KIND = "noisecraft.tabular"
DEFAULT_NET = {"width": 256, "depth": 3, "token_dim": 16, "noise_channels": 64, "dropout": 0.0}
DEFAULT_SAMPLING = {"steps": 32, "sampler": "heun", "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0}


class RowBatches:
    """Map-style dataset over row indices whose collate gathers whole batches at once (no per-row tensors)."""

    def __init__(self, x_num: np.ndarray, x_cat: np.ndarray, observed: np.ndarray):
        self.x_num = torch.from_numpy(x_num)
        self.x_cat = torch.from_numpy(x_cat)
        self.observed = torch.from_numpy(observed)

    def __len__(self) -> int:
        return len(self.x_num)

    def __getitem__(self, index: int) -> int:
        return index

    def collate(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rows = torch.as_tensor(indices)
        return self.x_num[rows], self.x_cat[rows], self.observed[rows]


class JointLoss:
    """``loss_fn(model, batch, generator)`` for the Trainer: ``joint_loss`` with this table's settings bound."""

    def __init__(self, *, process: JointProcess, mask_id: int, condition_rate: float, always_given: torch.Tensor):
        self.process, self.mask_id = process, mask_id
        self.condition_rate, self.always_given = condition_rate, always_given

    def __call__(self, model, batch, generator):
        return joint_loss(model, batch, generator, process=self.process, mask_id=self.mask_id,
                          condition_rate=self.condition_rate, always_given=self.always_given)


def _observed(codec: TableCodec, x_cat: np.ndarray) -> np.ndarray:
    """1 where a numeric value is present, 0 where its present/missing token says missing."""
    observed = np.ones((len(x_cat), len(codec.numeric)), dtype=np.float32)
    for index, codec_num in enumerate(codec.numeric):
        if codec_num.has_missing:
            observed[:, index] = 1 - x_cat[:, codec.missing_index(codec_num.name)]
    return observed


def parse_where(where) -> dict:
    """``{"col": value}``, ``"col=value"`` or a list of such strings -> a dict of conditions."""
    if where is None:
        return {}
    if isinstance(where, dict):
        return dict(where)
    items = [where] if isinstance(where, str) else list(where)
    conditions = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"condition {item!r} must look like column=value, e.g. target=1")
        name, value = item.split("=", 1)
        conditions[name.strip()] = value.strip()
    return conditions


MAX_ROWS = 10_000_000


class TabularModel(Pipeline):
    """A fitted table model: encoders + joint denoiser (EMA weights) + sampling settings.

    Also a :class:`noisecraft.protocol.Pipeline`: ``generate({"rows": 100, "where": ["label=1"]}, seed=0)``.
    """

    modality = "tabular"

    def __init__(self, codec: TableCodec, denoiser: TabularDenoiser, model_config: dict, *, source: str = ""):
        self.codec, self.denoiser, self.model_config = codec, denoiser.eval(), model_config
        self.process = JointProcess(**model_config["process"])
        self.source = source

    @staticmethod
    def build_denoiser(model_config: dict) -> TabularDenoiser:
        net = TabularNet(model_config["num_numeric"], model_config["category_sizes"], **model_config["net"])
        return TabularDenoiser(net, sigma_data=model_config["process"]["sigma_data"])

    @classmethod
    def load(cls, model_dir: str | Path, *, device: str | None = None, use_ema: bool = True) -> TabularModel:
        """Load a model folder written by ``fit`` (or ``save``) onto ``device`` (default: a GPU when there is one);
        the raw weights instead of the averaged ones with ``use_ema=False``."""
        try:
            model_dir = resolve_model_dir(model_dir)
        except FileNotFoundError:
            pass  # said below, with what a tabular model folder holds
        model_dir = Path(model_dir)
        transforms = model_dir / TRANSFORMS_FILE
        if not transforms.is_file():
            raise FileNotFoundError(f"{model_dir} is not a tabular model directory (no {TRANSFORMS_FILE}); "
                                    f"create one with `noisecraft tabular fit DATA.csv -o {model_dir}`")
        model_config = read_config(model_dir)["model_config"]
        if model_config.get("kind") not in (MODEL_KIND, "tabular"):
            raise ValueError(f"{model_dir} holds a {model_config.get('kind')!r} model, not a tabular one")
        denoiser = cls.build_denoiser(model_config)
        load_weights(denoiser, model_dir, use_ema=use_ema)
        codec = TableCodec.from_dict(json.loads(transforms.read_text(encoding="utf-8")))
        return cls(codec, denoiser.to(resolve_device(device or "auto")), model_config, source=str(model_dir))

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    def save(self, model_dir: str | Path) -> Path:
        """Export weights + config (as the trainer does) and ``transforms.json`` into ``model_dir``."""
        model_dir = Path(model_dir)
        export_model(model_dir, model=self.denoiser, ema=self.denoiser, model_config=self.model_config,
                     train_config=self.model_config.get("train", {}), step=self.model_config.get("steps_done", 0))
        write_transforms(self.codec, model_dir)
        return model_dir

    def _conditions(self, where) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        num_numeric, num_categorical = len(self.codec.numeric), len(self.codec.categorical)
        mask_id = self.denoiser.net.mask_id
        given_num = torch.zeros(num_numeric, dtype=torch.bool)
        x_given = torch.zeros(num_numeric)
        given_tokens = torch.full((num_categorical,), mask_id, dtype=torch.long)
        for name, value in parse_where(where).items():
            for part, index, fixed in self.codec.condition(name, value):
                if part == "num":
                    given_num[index], x_given[index] = True, fixed
                else:
                    given_tokens[index] = fixed
        return given_num, x_given, given_tokens

    def sample(self, num_rows: int, *, where=None, seed: int = 0, batch_size: int = 16384,
               steps: int | None = None, sampler: str | None = None, device: str | None = None,
               progress=None) -> pd.DataFrame:
        """``num_rows`` synthetic rows with the input's columns, dtypes and labels; ``where`` fixes column values
        (``{"col": value}`` or ``"col=value"`` strings) for every row. Rows are drawn ``batch_size`` at a time.

        The model samples on the device it was loaded on; another ``device`` uses a private copy, so a concurrent
        caller never sees the model move. ``progress(done, total)`` is called after every sampler step (of every
        batch).
        """
        if isinstance(num_rows, bool) or not isinstance(num_rows, int) or num_rows < 1:
            raise ValueError(f"the number of rows must be a positive integer, got {num_rows!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"the batch size must be a positive integer, got {batch_size!r}")
        given_num, x_given, given_tokens = self._conditions(where)
        settings = {**self.model_config["sampling"], **({"steps": steps} if steps else {}),
                    **({"sampler": sampler} if sampler else {})}
        denoiser = self.denoiser
        if device is not None and resolve_device(device) != self.device:
            denoiser = copy.deepcopy(denoiser).to(resolve_device(device))
        device = next(denoiser.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)
        rng = np.random.default_rng(seed)
        batches = -(-num_rows // batch_size)
        reporter = StepReporter(batches * settings["steps"], progress)
        frames = []
        for start in range(0, num_rows, batch_size):
            count = min(batch_size, num_rows - start)
            x_num, tokens = sample_rows(
                denoiser, count, num_numeric=len(self.codec.numeric),
                num_categorical=len(self.codec.categorical), mask_id=denoiser.net.mask_id,
                process=self.process, given_num=given_num, x_given=x_given, given_tokens=given_tokens,
                generator=generator, device=device, on_step=lambda: reporter.step(), **settings)
            frames.append(self.codec.decode(x_num.cpu().numpy(), tokens.cpu().numpy(), rng=rng, id_offset=start))
        return pd.concat(frames, ignore_index=True)

    # --- the pipeline protocol (noisecraft.protocol) ---

    def parameters(self) -> list[Param]:
        sampling = self.model_config["sampling"]
        columns = ", ".join(self.codec.schema.names) if hasattr(self.codec, "schema") else "the table's columns"
        return [
            Param("rows", "int", 1000, "Number of rows to generate.", 1, MAX_ROWS),
            Param("where", "strings", None, f"Fix a column's value in every row, as col=value ({columns})."),
            Param("steps", "int", sampling["steps"], "Sampler steps.", 1, 1000),
            Param("sampler", "choice", sampling["sampler"], "Sampler for the numeric columns.",
                  choices=tuple(SAMPLERS)),
            Param("batch_size", "int", 16384, "Rows generated at a time (bounds memory; the rows do not depend "
                                              "on it only when it is at least rows).", 1, 1_000_000),
        ]

    def _generate(self, params: dict[str, Any], *, seed: int, progress, cancel) -> Generation:
        reporter = StepReporter(1, progress, cancel)
        reporter.check_cancel()
        rows = self.sample(params["rows"], where=params["where"], seed=seed, batch_size=params["batch_size"],
                           steps=params["steps"], sampler=params["sampler"],
                           progress=lambda done, total: reporter.step(total=total))
        record = {"model": self.source, "modality": self.modality, **params, "seed": seed,
                  "noisecraft": __version__}
        return Generation(rows, record)

    def save_outputs(self, generation: Generation, out_dir: str | Path) -> list[Path]:
        """``rows.csv`` and ``rows.json`` (the parameters and seed that made it), both written atomically."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        table, record = out_dir / "rows.csv", out_dir / "rows.json"
        atomic_write_bytes(table, generation.items.to_csv(index=False).encode("utf-8"))
        atomic_write_bytes(record, json.dumps(generation.parameters, indent=1, sort_keys=True).encode("utf-8"))
        return [table, record]


def write_transforms(codec: TableCodec, model_dir: Path) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(model_dir / TRANSFORMS_FILE, json.dumps(codec.to_dict(), indent=1).encode("utf-8"))


def default_steps(num_rows: int, batch_size: int) -> int:
    """Training length when neither steps nor minutes are given: ~60 epochs, within [1000, 10000] steps."""
    return int(min(10_000, max(1_000, 60 * num_rows // batch_size)))


def fit(data, *, target: str | None = None, schema=None, minutes: float | None = None, out_dir=None,
        steps: int | None = None, batch_size: int | None = None, lr: float = 1e-3, net: dict | None = None,
        condition_rate: float = 0.25, max_categories: int = 200, seed: int = 0, progress: bool = True,
        encoding: str = "utf-8", device: str | None = None, resume: bool = False) -> TabularModel:
    """Fit a joint diffusion model to a table (DataFrame or CSV/Parquet path).

    ``target``: a column that is always among the conditions of conditioned training rows, so ``where={target: v}``
    sampling is well trained. ``schema``: overrides (dict or JSON/YAML file) of the inferred column kinds.
    ``minutes``: wall-clock training budget; ``steps``: optimizer steps (default ``default_steps``).
    ``out_dir``: the model directory to train into (a temporary one if None; use ``.save`` to keep it).
    ``resume``: continue the run in ``out_dir`` from its latest checkpoint (same data and settings).
    """
    if resume and out_dir is None:
        raise ValueError("resume needs out_dir: the model folder of the run to continue")
    frame = as_frame(data, encoding=encoding)
    table_schema = infer_schema(frame, overrides=schema)
    if target is not None:
        if target not in table_schema.names:
            raise ValueError(f"target {target!r} is not a column; columns are {table_schema.names}")
        if not table_schema[target].modelled:
            raise ValueError(f"target {target!r} is {table_schema[target].kind} and not modelled; pick another column")
    codec = TableCodec.fit(frame, table_schema, max_categories=max_categories)
    x_num, x_cat = codec.encode(frame)
    dataset = RowBatches(x_num, x_cat, _observed(codec, x_cat))
    batch_size = batch_size or int(min(1024, max(32, len(frame) // 4)))
    if steps is None:
        steps = 1_000_000 if minutes is not None else default_steps(len(frame), batch_size)
    process = JointProcess()
    model_config = {
        "kind": MODEL_KIND,
        "num_numeric": len(codec.numeric),
        "category_sizes": codec.category_sizes,
        "net": {**DEFAULT_NET, **(net or {})},
        "process": process.to_dict(),
        "sampling": dict(DEFAULT_SAMPLING),
        "target": target,
        "condition_rate": condition_rate,
    }
    torch.manual_seed(seed)  # network initialisation: the same seed gives the same model
    denoiser = TabularModel.build_denoiser(model_config)
    always_given = torch.zeros(len(codec.numeric) + len(codec.categorical), dtype=torch.bool)
    if target is not None:
        for part, index, _ in codec.condition(target, _any_value(frame[target])):
            always_given[index if part == "num" else len(codec.numeric) + index] = True
    loss_fn = JointLoss(process=process, mask_id=denoiser.net.mask_id, condition_rate=condition_rate,
                        always_given=always_given)
    warmup_steps = min(200, steps // 10)
    if resume:  # the warm-up was planned from the first run's length: keep it, so only `steps` changes
        warmup_steps = (read_config(out_dir).get("train_config") or {}).get("warmup_steps", warmup_steps)
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=warmup_steps,
                         ema_decay=0.995, seed=seed, checkpoint_every=500 if out_dir is not None else 0, log_every=max(1, min(100, steps // 10)),
                         max_minutes=minutes)
    with tempfile.TemporaryDirectory() if out_dir is None else nullcontext(out_dir) as directory:
        directory = Path(directory)
        write_transforms(codec, directory)
        trainer = Trainer(denoiser, loss_fn, dataset, config, directory, model_config=model_config,
                          collate_fn=dataset.collate, progress=progress, device=device)
        result = trainer.fit(resume=resume)
        denoiser.load_state_dict(trainer.ema.state_dict())
    model_config["steps_done"] = result.step
    return TabularModel(codec, denoiser.cpu(), model_config, source=str(out_dir or ""))


def train_tabular(config: dict[str, Any], *, resume: bool = False, progress: bool = True) -> TabularModel:
    """The registry's training entry: ``config`` holds :func:`fit`'s arguments, with ``data`` and ``out_dir``
    (``noisecraft.train({"data": "t.csv", "out_dir": "runs/t", "minutes": 2}, modality="tabular")``).
    The returned model has ``.step``, as every training entry's result has."""
    config = dict(config)
    for key in ("data", "out_dir"):
        if config.get(key) is None:
            raise ValueError(f"a tabular training config needs {key!r} (the table to fit and the model folder)")
    model = fit(config.pop("data"), resume=resume, progress=progress, **config)
    model.step = model.model_config["steps_done"]
    return model


def make_tiny_model(out_dir: str | Path) -> Path:
    """A tiny fitted model of a small mixed-type table (seconds): for the contract test and examples."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"size": rng.normal(10, 2, 64).round(2), "colour": rng.choice(["red", "blue"], 64),
                          "count": rng.integers(0, 5, 64)})
    fit(frame, out_dir=out_dir, steps=4, batch_size=16, net={"width": 32, "depth": 1}, progress=False)
    return Path(out_dir)


def _any_value(series: pd.Series):
    """A present value of the column (to locate its model coordinates)."""
    present = series.dropna()
    return present.iloc[0] if len(present) else None
