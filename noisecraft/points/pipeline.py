"""The points (3D assets) modality: a point transformer behind the shared engine, prompts through the shared text
encoders and classifier-free guidance, clouds written as PLY + mesh + pictures.

A request: ``{"prompt": "a tall cylinder", "points": 2048, "n": 4, "steps": 16, "guidance": 2.0, "mesh": true}``.
Cloud ``i`` starts from seed ``seed + i`` (so it does not change with ``n``); the starting noise and every fresh
noise draw have zero centre of mass (the world's clouds are centred), and the final cloud is re-centred.
``save_outputs`` writes, per cloud, ``cloud_XXXX.ply`` (points, normals when the model predicts them, the
parameters as a header comment) and with ``mesh`` ``mesh_XXXX.glb`` (an alpha shape, see
:mod:`noisecraft.points.io`); for the batch ``views.png`` (front, side and top views), ``turntable.gif`` and
``generation.json`` (parameters, per-cloud seeds, files, reconstruction method and the analyser's verdict); with
``mesh_format="obj"`` the meshes are ``mesh_XXXX.obj``. Every file carries the parameters (PLY header comment, GLB
extras, OBJ comment, PNG text chunk, GIF comment).
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from noisecraft import __version__
from noisecraft.device import resolve_device
from noisecraft.diffusion.config import DiffusionConfig
from noisecraft.diffusion.guidance import guided_denoiser
from noisecraft.diffusion.samplers import SAMPLERS, get_sampler, nfe
from noisecraft.images.pipeline import ImageDiffusionModel
from noisecraft.jsonconfig import from_dict
from noisecraft.protocol import Generation, Param, ParameterError, Pipeline, StepReporter
from noisecraft.text.encoders import is_trainable
from noisecraft.training.checkpoint import load_weights, read_config, resolve_model_dir
from noisecraft.training.distributed import unwrap_model

MODEL_KIND = "points"
MAX_CLOUDS = 64
MIN_POINTS = 16


@dataclass
class PointsModelSpec:
    """What rebuilds a points model (``model_config`` in ``config.json``): ``points`` per training cloud,
    ``channels`` (3: xyz, 6: xyz + normals), the network (``network`` + ``net``), the diffusion config, the class
    names of a label model and the text encoder of a text model (``None``: no text)."""

    points: int
    channels: int
    net: dict
    diffusion: dict
    network: str = "point_transformer"
    class_names: list[str] = field(default_factory=list)
    text_encoder: dict | None = None
    data: str = ""
    world: dict | None = None  # the WorldConfig of a world-trained model (held-out pairs, orientation)
    training: dict = field(default_factory=dict)
    kind: str = MODEL_KIND

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def max_points(self) -> int:
        return int(self.net.get("max_points", 4096))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PointsModelSpec":
        if data.get("kind", MODEL_KIND) != MODEL_KIND:
            raise ValueError(f"this is a {data.get('kind')!r} model, not a points model")
        return from_dict(cls, data, name="points model")


class PointsDiffusionModel(ImageDiffusionModel):
    """The denoiser ``D(x [B, N, C], sigma, class_labels=, context=, context_mask=)``, plus a trainable text encoder
    when the model has one (a frozen one is shared per device and never part of the state dict): the image model's
    class (text encoding, the null condition) with the spec's point network."""

    spec: PointsModelSpec


def make_loss_fn(spec: PointsModelSpec) -> Callable:
    """``loss_fn(model, batch, generator) -> [B]``: the shared denoising loss on ``batch["points"]`` with the caption
    (text models) or label (label models) dropped with ``cond_drop_prob`` (classifier-free guidance training)."""
    diffusion = DiffusionConfig.from_dict(spec.diffusion)

    def loss_fn(model: nn.Module, batch: dict[str, Any], generator: torch.Generator) -> Tensor:
        x0 = batch["points"].float()
        if spec.text_encoder is not None:
            inner = unwrap_model(model)
            context, mask = inner.encode_text(list(batch["caption"]))
            return diffusion.loss(model, x0, generator=generator, null_cond=inner.null_text(context.shape[1]),
                                  context=context, context_mask=mask)
        if spec.num_classes:
            null = {"class_labels": torch.tensor(spec.num_classes, device=x0.device)}
            return diffusion.loss(model, x0, generator=generator, null_cond=null,
                                  class_labels=batch["label"].long())
        return diffusion.loss(model, x0, generator=generator)

    return loss_fn


def centred_noise(shape: tuple[int, ...], generator: torch.Generator, device) -> Tensor:
    """Standard normal noise ``[B, N, C]`` with the centre of mass of the xyz channels removed."""
    noise = torch.randn(shape, generator=generator, device=device)
    noise[..., :3] -= noise[..., :3].mean(dim=1, keepdim=True)
    return noise


class PointsPipeline(Pipeline):
    """A trained points model: ``noisecraft.load(folder).generate({"prompt": "a tall cylinder"}, seed=0)``."""

    modality = "points"

    def __init__(self, model: PointsDiffusionModel, *, source: str = ""):
        self.model = model.eval().requires_grad_(False)
        self.spec = model.spec
        self.diffusion = model.diffusion
        self.source = source

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu", use_ema: bool = True) -> "PointsPipeline":
        model_dir = resolve_model_dir(path)
        spec = PointsModelSpec.from_dict(read_config(model_dir)["model_config"])
        model = PointsDiffusionModel(spec)
        load_weights(model, model_dir, use_ema=use_ema)
        return cls(model.to(resolve_device(device)), source=str(model_dir))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def conditioned(self) -> bool:
        return self.spec.text_encoder is not None or bool(self.spec.class_names)

    def parameters(self) -> list[Param]:
        if self.spec.text_encoder is not None:
            what = 'What to make, e.g. "a tall cylinder" (none: unconditional).'
        elif self.spec.class_names:
            what = f"The class to make, one of: {', '.join(self.spec.class_names)} (none: unconditional)."
        else:
            what = "This model is unconditional: leave the prompt out."
        return [
            Param("prompt", "str", None, what, 1, 1000),
            Param("points", "int", self.spec.points, f"Points per cloud (the model was trained on "
                                                     f"{self.spec.points}).", MIN_POINTS, self.spec.max_points),
            Param("n", "int", 4, "Number of clouds; cloud i uses seed + i.", 1, MAX_CLOUDS),
            Param("steps", "int", 16, "Sampler steps.", 1, 1000),
            Param("guidance", "float", 2.0 if self.conditioned else 1.0,
                  "Classifier-free guidance scale (1 = plain conditional; needs a prompt).", 0.0, 30.0),
            Param("sampler", "choice", "heun", "Sampler (k-diffusion names).", choices=tuple(SAMPLERS)),
            Param("mesh", "bool", False, "Also reconstruct a mesh from each cloud (alpha shape)."),
            Param("mesh_format", "choice", "glb", "File format of the meshes.", choices=("glb", "obj")),
        ]

    def _conditioned(self, prompt: str | None, n: int, guidance: float) -> tuple[Callable, int, dict[str, Any]]:
        if prompt is None:  # unconditional: guidance has nothing to contrast with
            if self.spec.text_encoder is not None:
                null = {k: v.unsqueeze(0).expand(n, *v.shape) for k, v in self.model.null_text(1).items()}
                return (lambda x, s: self.model(x, s, **null)), 1, {}
            if self.spec.class_names:
                labels = torch.full((n,), self.spec.num_classes, dtype=torch.long, device=self.device)
                return (lambda x, s: self.model(x, s, class_labels=labels)), 1, {}
            return self.model, 1, {}
        if self.spec.text_encoder is not None:
            from noisecraft.images.text2image import text_guided_denoiser, unknown_words_message

            # a learned encoder maps unknown words to <unk>: a shape the model never saw would come out as noise
            unknown = self.model.unknown_words([prompt]) if is_trainable(self.spec.text_encoder) else []
            if unknown:
                raise ParameterError("prompt", unknown_words_message(unknown, self.spec.text_encoder.get("vocab"))
                                     + "; rephrase with those words")
            try:
                return text_guided_denoiser(self.model, prompt, n, guidance=guidance)
            except ValueError as error:
                raise ParameterError("prompt", str(error)) from None
        if self.spec.class_names:
            if prompt not in self.spec.class_names:
                raise ParameterError("prompt", f"unknown class {prompt!r}; this model makes: "
                                               f"{', '.join(self.spec.class_names)}")
            labels = torch.full((n,), self.spec.class_names.index(prompt), dtype=torch.long, device=self.device)
            if guidance == 1.0:
                return (lambda x, s: self.model(x, s, class_labels=labels)), 1, {}
            null = torch.full_like(labels, self.spec.num_classes)
            return guided_denoiser(self.model, {"class_labels": labels}, {"class_labels": null}, guidance), 2, {}
        raise ParameterError("prompt", "this model is unconditional: it takes no prompt")

    @torch.no_grad()
    def sample(self, n: int, *, prompt: str | None = None, points: int | None = None, steps: int = 16,
               guidance: float = 2.0, sampler: str = "heun", seed: int = 0,
               progress: Callable[[dict], None] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """``n`` clouds ``[n, points, channels]`` (numpy float32) and their parameters record."""
        points = points or self.spec.points
        sigmas = self.diffusion.sampling_sigmas(steps).to(self.device)
        shape = (points, self.spec.channels)
        x = torch.stack([centred_noise((1, *shape), torch.Generator().manual_seed(seed + i), "cpu")[0]
                         for i in range(n)]).to(self.device) * float(sigmas[0])
        denoiser, evaluations, record = self._conditioned(prompt, n, guidance)
        generator = torch.Generator(device=self.device).manual_seed(seed)

        def noise_sampler(sigma: float, sigma_next: float) -> Tensor:
            return centred_noise(x.shape, generator, self.device)

        options = {}
        if "noise_sampler" in inspect.signature(get_sampler(sampler)).parameters:
            options["noise_sampler"] = noise_sampler
        callback = None if progress is None else (lambda info: progress(info | {"total": steps}))
        out = get_sampler(sampler)(denoiser, x, sigmas, callback=callback, generator=generator, **options)
        out[..., :3] -= out[..., :3].mean(dim=1, keepdim=True)
        if self.spec.channels >= 6:
            out[..., 3:6] = torch.nn.functional.normalize(out[..., 3:6], dim=-1)
        record = {"model": self.source, "prompt": prompt, "points": points, "n": n, "steps": steps,
                  "guidance": guidance if prompt is not None else None, "sampler": sampler, "schedule": "karras",
                  "seed": seed,
                  "nfe": nfe(sampler, steps) * evaluations, **record,
                  "sigma_min": self.diffusion.sigma_min, "sigma_max": self.diffusion.sigma_max,
                  "noisecraft": __version__}
        return out.float().cpu().numpy(), record

    def _generate(self, params: dict[str, Any], *, seed: int, progress, cancel) -> Generation:
        reporter = StepReporter(params["steps"], progress, cancel)
        reporter.check_cancel()
        clouds, record = self.sample(params["n"], prompt=params["prompt"], points=params["points"],
                                     steps=params["steps"], guidance=params["guidance"], sampler=params["sampler"],
                                     seed=seed, progress=lambda info: reporter.step(total=info["total"]))
        record["mesh"] = params["mesh"]
        if params["mesh"]:
            record["mesh_format"] = params["mesh_format"]
        return Generation(clouds, record)

    def save_outputs(self, generation: Generation, out_dir: str | Path) -> list[Path]:
        return save_clouds(generation.items, generation.parameters, out_dir)


def save_clouds(clouds: np.ndarray, parameters: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the files described in the module docstring; returns them (sidecar last)."""
    import json

    from noisecraft.points import io as pio

    out_dir = Path(out_dir)
    files: list[Path] = []
    items = []
    analyses = _analyse(clouds, parameters.get("prompt"))
    for i, cloud in enumerate(clouds):
        item = {"index": i, "seed": parameters["seed"] + i}
        normals = cloud[:, 3:6] if cloud.shape[1] >= 6 else None
        ply = pio.write(out_dir / f"cloud_{i:04d}.ply",
                        pio.ply_bytes(cloud[:, :3], normals, comments=parameters | item))
        files.append(ply)
        item["ply"] = ply.name
        if parameters.get("mesh"):
            vertices, faces, how = pio.alpha_shape(cloud[:, :3])
            fmt = parameters.get("mesh_format", "glb")
            mesh = pio.write(out_dir / f"mesh_{i:04d}.{fmt}",
                             pio.mesh_bytes(vertices, faces, fmt, parameters | item | how))
            files.append(mesh)
            item |= {"mesh": mesh.name, **how}
        if analyses is not None:
            item["analysis"] = analyses[i]
        items.append(item)
    titles = [f"#{i} (seed {parameters['seed'] + i})" for i in range(len(clouds))]
    files.append(pio.write(out_dir / "views.png", pio.views_png([c[:, :3] for c in clouds], titles, parameters)))
    files.append(pio.write(out_dir / "turntable.gif", pio.turntable_gif([c[:, :3] for c in clouds],
                                                                      parameters=parameters)))
    sidecar = {"parameters": parameters, "clouds": items}
    files.append(pio.write(out_dir / "generation.json",
                           (json.dumps(sidecar, indent=2, sort_keys=True, default=str) + "\n").encode()))
    return files


def _analyse(clouds: np.ndarray, prompt: str | None) -> list[dict[str, Any]] | None:
    """The analyser's verdict per cloud for prompts of the world's grammar, else None."""
    from noisecraft.points.analyzer import analyze, matches_prompt
    from noisecraft.points.scenes import analyze_scene, matches_scene, parse_scene
    from noisecraft.points.world import parse_caption

    if not prompt or parse_caption(prompt) is None:
        return None
    out: list[dict[str, Any]] = []
    if parse_scene(prompt) is not None:
        for cloud in clouds:
            parts = analyze_scene(cloud[:, :3])
            ok, reasons = matches_scene(parts, prompt)
            out.append({"parts": parts, "matches_prompt": ok, "reasons": reasons})
        return out
    for cloud in clouds:
        result = analyze(cloud[:, :3])
        ok, reasons = matches_prompt(result, prompt)
        out.append({"shape": result.shape, "proportion": result.proportion, "size": result.size,
                    "matches_prompt": ok, "reasons": reasons})
    return out
