"""The model catalogue: which models the service offers, and the loaded pipelines, cached per (folder, device).

Models come only from the modality registry (:func:`noisecraft.registry.for_model_dir`): the models shipped in
the package's ``assets/`` folder and every model folder in ``--models DIR`` (each sub-folder with a
``config.json``, or DIR itself). A model's name is its folder's name. Nothing here knows a modality by name, so a
modality registered later is served as soon as one of its model folders is in DIR.
"""

from __future__ import annotations

import json
import re
import threading
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from noisecraft import registry
from noisecraft.protocol import Pipeline

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path
    modality: str
    source: str  # "shipped" or "models-dir"


FIRST_SHIPPED = "shapes_t2i"  # what a first-time visitor of the studio sees selected


def shipped_model_dirs() -> list[Path]:
    """Model folders shipped inside the package (``noisecraft/assets/<name>/config.json`` with a ``model_config``;
    other assets, such as the video evaluator's classifier, are not generation models), the text-to-image model
    first."""
    assets = Path(str(resources.files("noisecraft") / "assets"))
    if not assets.is_dir():
        return []
    folders = [p for p in assets.iterdir() if p.is_dir() and _is_model_folder(p)]
    return sorted(folders, key=lambda p: (p.name != FIRST_SHIPPED, p.name))


def _is_model_folder(folder: Path) -> bool:
    try:
        return "model_config" in json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def _model_dirs(models_dir: Path) -> list[Path]:
    if not models_dir.is_dir():
        raise FileNotFoundError(f"--models {models_dir}: no such directory")
    if (models_dir / "config.json").is_file() or (models_dir / "checkpoints").is_dir():
        return [models_dir]
    return sorted(p for p in models_dir.iterdir()
                  if p.is_dir() and ((p / "config.json").is_file() or (p / "checkpoints").is_dir()))


class PipelineCache:
    """Loaded pipelines per (model folder, device), each loaded once (a lock per key; other keys load in
    parallel). Pipelines are shared by worker threads: the protocol guarantees concurrent ``generate`` calls."""

    def __init__(self):
        from noisecraft.safety import ensure_enabled  # the service filters like the CLI and API (NOISECRAFT_SAFETY)

        ensure_enabled()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._pipelines: dict[tuple[str, str], Pipeline] = {}

    def get(self, path: str | Path, device: str = "cpu") -> Pipeline:
        key = (str(Path(path).resolve()), str(device))
        with self._lock:
            if key in self._pipelines:
                return self._pipelines[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            if key not in self._pipelines:
                modality, folder = registry.for_model_dir(key[0])
                pipeline = modality.resolve("pipeline").load(folder, device=device)
                with self._lock:
                    self._pipelines[key] = pipeline
            return self._pipelines[key]

    def loaded(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._pipelines)


class Catalogue:
    """Models by name: the shipped ones (unless ``include_shipped=False``) and those in ``models_dir``."""

    def __init__(self, models_dir: str | Path | None = None, *, include_shipped: bool = True,
                 cache: PipelineCache | None = None):
        self.cache = cache or PipelineCache()
        self.entries: dict[str, ModelEntry] = {}
        self.problems: dict[str, str] = {}  # folders that could not be read: name -> why
        folders = [(p, "shipped") for p in shipped_model_dirs()] if include_shipped else []
        if models_dir is not None:
            folders += [(p, "models-dir") for p in _model_dirs(Path(models_dir))]
        for folder, source in folders:
            name = folder.resolve().name
            if not NAME.match(name):
                warnings.warn(f"model folder {folder} skipped: its name is not a valid model name "
                              f"(letters, digits, '.', '_', '-')")
                continue
            try:
                modality, model_dir = registry.for_model_dir(folder)
            except (ValueError, OSError) as error:
                self.problems[name] = str(error)
                continue
            if name in self.entries and source == "models-dir":
                warnings.warn(f"model {name!r} in --models replaces the shipped model of that name")
            self.entries[name] = ModelEntry(name, folder.resolve(), modality.name, source)

    def names(self) -> list[str]:
        return list(self.entries)

    def entry(self, name: str) -> ModelEntry:
        """The model called ``name``; KeyError when there is none."""
        return self.entries[name]

    def pipeline(self, name: str, device: str = "cpu") -> Pipeline:
        return self.cache.get(self.entries[name].path, device)

    def describe(self, name: str, device: str = "cpu") -> dict[str, Any]:
        """Name, modality, parameters with limits and the request's JSON schema (loads the model once)."""
        entry = self.entries[name]
        pipeline = self.pipeline(name, device)
        described = pipeline.describe()
        described.pop("model", None)  # the server's folder path is not the client's business
        return {"name": name, **described, "modality": entry.modality, "schema": pipeline.json_schema()}
