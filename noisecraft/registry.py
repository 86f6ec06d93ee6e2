"""The modality registry: the one list of what noisecraft can train, load, generate and serve.

Each modality registers its model kinds (the ``kind`` written in a model folder's ``config.json``), its pipeline
class (:class:`noisecraft.protocol.Pipeline`), its training entry, its CLI sub-app and a tiny-model maker for the
contract test. ``noisecraft.load``, ``noisecraft.train``, the CLI and the service read this registry; nothing else
knows the list. Entries name their objects as ``"module:attribute"`` strings and are imported only when used, so
an optional modality (tables need pandas) costs nothing until it is used and no import runs in a circle.

Another package adds a modality with :func:`register`, or through the ``noisecraft.modalities`` entry-point group
(each entry point a :class:`Modality`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class MissingDependency(ImportError):
    """An optional modality's package is not installed; the message says which extra installs it."""


@dataclass(frozen=True)
class Modality:
    """One modality. ``pipeline``, ``train``, ``cli`` and ``tiny_model`` are ``"module:attribute"`` paths:

    - ``pipeline``: a :class:`~noisecraft.protocol.Pipeline` subclass (``.load(path, device=, use_ema=)``);
    - ``train``: ``train(config: dict, *, resume: bool, progress: bool)`` -> a result with ``.step``;
    - ``cli``: a typer app mounted as ``noisecraft <name> ...``;
    - ``tiny_model``: ``make(out_dir: Path) -> Path``, a small trained model folder in seconds (contract test);
    - ``evaluate``: a typer command mounted as ``noisecraft eval <name>`` (the modality's benchmark);
    - ``likelihood``: ``score(model_dir, data, *, limit, batch_size, seed, device, **method options) -> dict``, the
      JSON report of ``noisecraft likelihood MODEL DATA`` (bits/dim, NELBO, ...; see ``cli_likelihood.py``).
    ``extra`` is the pip extra that installs what the modality needs beyond the core.
    """

    name: str
    summary: str
    kinds: tuple[str, ...]
    pipeline: str
    train: str | None = None
    cli: str | None = None
    tiny_model: str | None = None
    evaluate: str | None = None
    likelihood: str | None = None
    extra: str | None = None

    def resolve(self, attribute: str) -> Any:
        """Import and return the object named by ``getattr(self, attribute)``; a missing optional dependency
        becomes an ImportError that says which extra to install."""
        target = getattr(self, attribute)
        if target is None:
            raise ValueError(f"the {self.name} modality has no {attribute}")
        module_name, _, name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name and error.name.split(".")[0] == "noisecraft":
                raise  # our own module is missing: a bug, keep the traceback
            hint = f"; install it with: pip install 'noisecraft[{self.extra}]'" if self.extra else ""
            raise MissingDependency(f"the {self.name} modality needs {error.name or error}{hint}") from error
        return getattr(module, name)


_MODALITIES: dict[str, Modality] = {}


def register(modality: Modality, *, replace: bool = False) -> Modality:
    """Add ``modality``; a name or model kind already taken is an error unless ``replace``."""
    if not replace:
        if modality.name in _MODALITIES:
            raise ValueError(f"a modality named {modality.name!r} is already registered")
        taken = {kind: m.name for m in _MODALITIES.values() for kind in m.kinds}
        clash = [kind for kind in modality.kinds if kind in taken]
        if clash:
            raise ValueError(f"model kind {clash[0]!r} already belongs to the {taken[clash[0]]} modality")
    _MODALITIES[modality.name] = modality
    return modality


def unregister(name: str) -> None:
    _MODALITIES.pop(name, None)


def modalities() -> list[Modality]:
    """Every registered modality, built-ins first, then those of installed plug-ins."""
    _load_entry_points()
    return list(_MODALITIES.values())


def get(name: str) -> Modality:
    """The modality called ``name``, or an error listing the known ones."""
    known = {m.name: m for m in modalities()}
    if name not in known:
        raise ValueError(f"unknown modality {name!r}; known: {', '.join(known)}")
    return known[name]


def for_kind(kind: str | None, *, source: str | Path = "the model folder") -> Modality:
    """The modality that loads model kind ``kind`` (from ``config.json``'s ``model_config.kind``)."""
    for modality in modalities():
        if kind in modality.kinds:
            return modality
    known = ", ".join(k for m in modalities() for k in m.kinds[:1])
    raise ValueError(f"{source} holds a model of kind {kind!r}, which this version of noisecraft cannot load "
                     f"(it loads: {known}); is it a noisecraft model folder, written by a newer version?")


def for_model_dir(path: str | Path) -> tuple[Modality, Path]:
    """The modality of the model folder ``path`` (a run folder, its export or one checkpoint) and that folder."""
    from noisecraft.training.checkpoint import read_config, resolve_model_dir

    model_dir = resolve_model_dir(path)
    kind = (read_config(model_dir).get("model_config") or {}).get("kind")
    return for_kind(kind, source=f"{model_dir}/config.json"), model_dir


_ENTRY_POINTS_LOADED = False


def _load_entry_points() -> None:
    global _ENTRY_POINTS_LOADED
    if _ENTRY_POINTS_LOADED:
        return
    _ENTRY_POINTS_LOADED = True
    from importlib.metadata import entry_points

    for entry in entry_points(group="noisecraft.modalities"):
        modality = entry.load()
        if modality.name not in _MODALITIES:
            register(modality)


# The built-in modalities. Text, molecules, video and points register here as they land.
register(Modality(
    name="image", summary="Images: class-conditional, unconditional and text-to-image (prompts, composition, "
                          "img2img, inpainting).",
    kinds=("image",),
    pipeline="noisecraft.images.pipeline:ImagePipeline",
    train="noisecraft.images.training:train_images",
    cli="noisecraft.images.cli:app",
    tiny_model="noisecraft.images.training:make_tiny_model",
    likelihood="noisecraft.images.likelihood:score_model",
))
register(Modality(
    name="tabular", summary="Synthetic tables with mixed column types (fit, sample with fixed values, evaluate).",
    kinds=("noisecraft.tabular", "tabular"),  # "tabular": the name api.load expected before the registry
    pipeline="noisecraft.tabular.model:TabularModel",
    train="noisecraft.tabular.model:train_tabular",
    cli="noisecraft.tabular.cli:app",
    tiny_model="noisecraft.tabular.model:make_tiny_model",
    extra="tabular",
))
register(Modality(
    name="text", summary="Text generation by masked diffusion (fit on a corpus, sample with prefixes or infilling, "
                         "bits per character).",
    kinds=("text",),
    pipeline="noisecraft.textgen.pipeline:TextPipeline",
    train="noisecraft.textgen.training:train_text",
    cli="noisecraft.textgen.cli:app",
    tiny_model="noisecraft.textgen.training:make_tiny_model",
    likelihood="noisecraft.textgen.evaluate:score_model",
))
register(Modality(
    name="molecules", summary="Molecules as SMILES or SELFIES by masked diffusion (fit on a SMILES file or MOSES, "
                              "sample with property targets, guidance and substructures, evaluate MOSES metrics).",
    kinds=("molecules",),
    pipeline="noisecraft.molecules.pipeline:MoleculePipeline",
    train="noisecraft.molecules.training:train_molecules",
    cli="noisecraft.molecules.cli:app",
    tiny_model="noisecraft.molecules.training:make_tiny_model",
    likelihood="noisecraft.molecules.likelihood:score_model",
    extra="molecules",
))
register(Modality(
    name="points", summary="3D assets as point clouds: text-to-shape on a procedural world or your meshes (PLY, "
                           "alpha-shape meshes, views, turntables), evaluated with MMD / COV / 1-NNA.",
    kinds=("points",),
    pipeline="noisecraft.points.pipeline:PointsPipeline",
    train="noisecraft.points.training:train_points",
    cli="noisecraft.points.cli:app",
    tiny_model="noisecraft.points.training:make_tiny_model",
    evaluate="noisecraft.points.cli:eval_",
    extra="points",
))
register(Modality(
    name="video", summary="Text-to-video: a space-time U-Net grown from the text-to-image model, on the moving-"
                          "shapes world or your clips (GIF / MP4 / PNG strips, motion analyser).",
    kinds=("video",),
    pipeline="noisecraft.video.pipeline:VideoPipeline",
    train="noisecraft.video.training:train_video",
    cli="noisecraft.video.cli:app",
    tiny_model="noisecraft.video.training:make_tiny_model",
    evaluate="noisecraft.video.cli_eval:evaluate_command",
))
