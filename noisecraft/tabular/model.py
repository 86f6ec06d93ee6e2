"""Fitting, saving, loading and sampling a tabular diffusion model.

A model directory is a shared-trainer output directory (``config.json``, ``model.safetensors``,
``ema.safetensors``, ``checkpoints/``, ``log.jsonl``) plus ``transforms.json``: the fitted column schema and
encoders, as plain JSON.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from noisecraft.training import TrainConfig, Trainer, export_model, load_weights, read_config
from noisecraft.training.checkpoint import atomic_write_bytes

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


class TabularModel:
    """A fitted table model: encoders + joint denoiser (EMA weights) + sampling settings."""

    def __init__(self, codec: TableCodec, denoiser: TabularDenoiser, model_config: dict):
        self.codec, self.denoiser, self.model_config = codec, denoiser.eval(), model_config
        self.process = JointProcess(**model_config["process"])

    @staticmethod
    def build_denoiser(model_config: dict) -> TabularDenoiser:
        net = TabularNet(model_config["num_numeric"], model_config["category_sizes"], **model_config["net"])
        return TabularDenoiser(net, sigma_data=model_config["process"]["sigma_data"])

    @classmethod
    def load(cls, model_dir: str | Path) -> TabularModel:
        model_dir = Path(model_dir)
        transforms = model_dir / TRANSFORMS_FILE
        if not transforms.is_file():
            raise FileNotFoundError(f"{model_dir} is not a tabular model directory (no {TRANSFORMS_FILE}); "
                                    f"create one with `noisecraft tabular fit DATA.csv -o {model_dir}`")
        model_config = read_config(model_dir)["model_config"]
        if model_config.get("kind") != MODEL_KIND:
            raise ValueError(f"{model_dir} holds a {model_config.get('kind')!r} model, not a tabular one")
        denoiser = cls.build_denoiser(model_config)
        load_weights(denoiser, model_dir, use_ema=True)
        codec = TableCodec.from_dict(json.loads(transforms.read_text(encoding="utf-8")))
        return cls(codec, denoiser, model_config)

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
               steps: int | None = None, sampler: str | None = None, device: str | None = None) -> pd.DataFrame:
        """``num_rows`` synthetic rows with the input's columns, dtypes and labels; ``where`` fixes column values
        (``{"col": value}`` or ``"col=value"`` strings) for every row. Rows are drawn ``batch_size`` at a time."""
        if isinstance(num_rows, bool) or not isinstance(num_rows, int) or num_rows < 1:
            raise ValueError(f"the number of rows must be a positive integer, got {num_rows!r}")
        given_num, x_given, given_tokens = self._conditions(where)
        settings = {**self.model_config["sampling"], **({"steps": steps} if steps else {}),
                    **({"sampler": sampler} if sampler else {})}
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.denoiser.to(device)
        generator = torch.Generator(device=device).manual_seed(seed)
        rng = np.random.default_rng(seed)
        frames = []
        for start in range(0, num_rows, batch_size):
            count = min(batch_size, num_rows - start)
            x_num, tokens = sample_rows(
                self.denoiser, count, num_numeric=len(self.codec.numeric),
                num_categorical=len(self.codec.categorical), mask_id=self.denoiser.net.mask_id,
                process=self.process, given_num=given_num, x_given=x_given, given_tokens=given_tokens,
                generator=generator, device=device, **settings)
            frames.append(self.codec.decode(x_num.cpu().numpy(), tokens.cpu().numpy(), rng=rng, id_offset=start))
        return pd.concat(frames, ignore_index=True)


def write_transforms(codec: TableCodec, model_dir: Path) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(model_dir / TRANSFORMS_FILE, json.dumps(codec.to_dict(), indent=1).encode("utf-8"))


def default_steps(num_rows: int, batch_size: int) -> int:
    """Training length when neither steps nor minutes are given: ~60 epochs, within [1000, 10000] steps."""
    return int(min(10_000, max(1_000, 60 * num_rows // batch_size)))


def fit(data, *, target: str | None = None, schema=None, minutes: float | None = None, out_dir=None,
        steps: int | None = None, batch_size: int | None = None, lr: float = 1e-3, net: dict | None = None,
        condition_rate: float = 0.25, max_categories: int = 200, seed: int = 0, progress: bool = True,
        encoding: str = "utf-8", device: str | None = None) -> TabularModel:
    """Fit a joint diffusion model to a table (DataFrame or CSV/Parquet path).

    ``target``: a column that is always among the conditions of conditioned training rows, so ``where={target: v}``
    sampling is well trained. ``schema``: overrides (dict or JSON/YAML file) of the inferred column kinds.
    ``minutes``: wall-clock training budget; ``steps``: optimizer steps (default ``default_steps``).
    ``out_dir``: the model directory to train into (a temporary one if None; use ``.save`` to keep it).
    """
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
    denoiser = TabularModel.build_denoiser(model_config)
    always_given = torch.zeros(len(codec.numeric) + len(codec.categorical), dtype=torch.bool)
    if target is not None:
        for part, index, _ in codec.condition(target, _any_value(frame[target])):
            always_given[index if part == "num" else len(codec.numeric) + index] = True
    loss_fn = JointLoss(process=process, mask_id=denoiser.net.mask_id, condition_rate=condition_rate,
                        always_given=always_given)
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=min(200, steps // 10),
                         ema_decay=0.995, seed=seed, checkpoint_every=0, log_every=max(1, min(100, steps // 10)),
                         max_minutes=minutes)
    with tempfile.TemporaryDirectory() if out_dir is None else nullcontext(out_dir) as directory:
        directory = Path(directory)
        write_transforms(codec, directory)
        trainer = Trainer(denoiser, loss_fn, dataset, config, directory, model_config=model_config,
                          collate_fn=dataset.collate, progress=progress, device=device)
        result = trainer.fit()
        denoiser.load_state_dict(trainer.ema.state_dict())
    model_config["steps_done"] = result.step
    return TabularModel(codec, denoiser.cpu(), model_config)


def _any_value(series: pd.Series):
    """A present value of the column (to locate its model coordinates)."""
    present = series.dropna()
    return present.iloc[0] if len(present) else None
