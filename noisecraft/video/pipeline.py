"""The video pipeline: prompts -> clips through the engine's samplers and the image modality's guidance.

A request: ``{"prompt": "a red circle moving right", "frames": 8, "batch": 2, "steps": 12, "guidance": 3.0}``.
Clip ``i`` starts from the noise of seed ``seed + i`` (so it does not change with the batch size); the prompt may
compose concepts with ``AND`` / negative weights and take a negative prompt, exactly as for text-to-image
(:func:`noisecraft.images.text2image.text_guided_denoiser`). ``frames`` may be anything from 1 (one image: the
temporal layers are skipped) to the model's ``max_frames``. ``Generation.items`` is a list of clips, each a list of
RGB ``PIL.Image`` frames at the model's resolution; ``save_outputs`` writes them (:mod:`noisecraft.video.io`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image
from torch import Tensor

from noisecraft import __version__
from noisecraft.device import resolve_device
from noisecraft.diffusion.samplers import SAMPLERS, get_sampler, nfe
from noisecraft.diffusion.schedules import SCHEDULES
from noisecraft.images.text2image import text_guided_denoiser
from noisecraft.protocol import Generation, Param, ParameterError, Pipeline, StepReporter
from noisecraft.training.checkpoint import load_weights, read_config, resolve_model_dir

from .io import save_clips
from .model import VideoDiffusionModel, VideoModelSpec
from .world import MOTION_PHRASES, parse_prompt

MAX_CLIPS = 64
DEFAULTS = {"steps": 12, "guidance": 3.0, "sampler": "dpmpp_2m"}
_MOTION_WORDS = {"moving", "growing", "shrinking", "standing", "still", "left", "right", "up", "down"}


def to_frames(clip: Tensor) -> list[Image.Image]:
    """``[3, T, H, W]`` in [-1, 1] -> T RGB frames (``round((x + 1) * 127.5)``, as images are written)."""
    if not torch.isfinite(clip).all():
        raise ValueError("the clip contains NaN or infinite values (did sampling diverge?)")
    pixels = ((clip.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return [Image.fromarray(pixels[:, t].permute(1, 2, 0).numpy()) for t in range(pixels.shape[1])]


def motion_words_note(prompt: str) -> str | None:
    """A warning for a prompt that speaks of motion outside the moving-shapes grammar ("moving sideways"), which
    the model was never shown; None for prompts of the grammar or without motion words."""
    words = set(prompt.lower().replace(",", " ").split())
    if not words & _MOTION_WORDS or parse_prompt(prompt) is not None or " AND " in prompt:
        return None
    return (f"the prompt {prompt!r} is outside the moving-shapes caption grammar; the motions this model was "
            f"trained on are: {', '.join(MOTION_PHRASES.values())}")


class VideoPipeline(Pipeline):
    """A trained video model: ``noisecraft.load(folder).generate({"prompt": "a red circle moving right"}, seed=0)``."""

    modality = "video"

    def __init__(self, model: VideoDiffusionModel, *, source: str = ""):
        self.model = model.eval().requires_grad_(False)
        self.spec: VideoModelSpec = model.spec
        self.diffusion = model.diffusion
        self.source = source

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu", use_ema: bool = True) -> "VideoPipeline":
        model_dir = resolve_model_dir(path)
        spec = VideoModelSpec.from_dict(read_config(model_dir)["model_config"])
        model = VideoDiffusionModel(spec)
        load_weights(model, model_dir, use_ema=use_ema)
        return cls(model.to(resolve_device(device)), source=str(model_dir))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def parameters(self) -> list[Param]:
        spec = self.spec
        return [
            Param("prompt", "str", None, 'What happens, e.g. "a red circle moving right"; compose with AND and '
                                         '":weight".', 1, 1000, required=True),
            Param("negative_prompt", "str", None, "What to steer away from (replaces the unconditional branch).",
                  1, 1000),
            Param("frames", "int", spec.frames, f"Frames per clip (the model was trained on {spec.frames}; 1 makes "
                                                "an image).", 1, spec.max_frames),
            Param("batch", "int", 1, "Number of clips; clip i uses seed + i.", 1, MAX_CLIPS),
            Param("steps", "int", DEFAULTS["steps"], "Sampler steps.", 1, 1000),
            Param("guidance", "float", DEFAULTS["guidance"], "Classifier-free guidance scale (1 = plain "
                                                              "conditional).", 0.0, 30.0),
            Param("sampler", "choice", DEFAULTS["sampler"], "Sampler (k-diffusion names).", choices=tuple(SAMPLERS)),
            Param("schedule", "choice", "karras", "Sigma schedule.", choices=tuple(SCHEDULES)),
        ]

    def initial_noise(self, n: int, frames: int, seed: int, sigma_max: float) -> Tensor:
        """Noise ``[n, C, frames, H, W]``; clip ``i`` from seed ``seed + i``."""
        shape = (self.spec.channels, frames, *self.spec.shape[1:])
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(seed + i)) for i in range(n)]
        return torch.stack(noise).to(self.device) * sigma_max

    @torch.no_grad()
    def sample(self, n: int, *, prompt: str, negative_prompt: str | None = None, frames: int | None = None,
               steps: int = DEFAULTS["steps"], guidance: float = DEFAULTS["guidance"],
               sampler: str = DEFAULTS["sampler"], schedule: str = "karras", seed: int = 0,
               progress: Callable[[dict], None] | None = None) -> tuple[Tensor, dict[str, Any]]:
        """``n`` clips ``[n, C, frames, H, W]`` in [-1, 1] and their parameters record (no timings: the same
        request and seed give the same record and bytes)."""
        frames = self.spec.frames if frames is None else frames
        if isinstance(frames, bool) or not isinstance(frames, int) or not 1 <= frames <= self.spec.max_frames:
            raise ValueError(f"frames must be an integer from 1 to {self.spec.max_frames} (this model's range; it "
                             f"was trained on {self.spec.frames}-frame clips), got {frames!r}")
        if n < 1:
            raise ValueError(f"the number of clips must be >= 1, got {n}")
        sigmas = self.diffusion.sampling_sigmas(steps, schedule=schedule).to(self.device)
        x = self.initial_noise(n, frames, seed, float(sigmas[0]))
        denoiser, evaluations, record = text_guided_denoiser(self.model, prompt, n, guidance=guidance,
                                                             negative_prompt=negative_prompt)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        callback = None if progress is None else (lambda info: progress(info | {"total": steps}))
        clips = get_sampler(sampler)(denoiser, x, sigmas, callback=callback, generator=generator)
        parameters = {"model": self.source, "prompt": prompt, **record, "frames": frames, "batch": n,
                      "steps": steps, "sampler": sampler, "schedule": schedule, "cfg_scale": guidance, "seed": seed,
                      "nfe": nfe(sampler, steps) * evaluations, "resolution": self.spec.resolution,
                      "sigma_min": self.diffusion.sigma_min, "sigma_max": self.diffusion.sigma_max,
                      "noisecraft": __version__}
        return clips.clamp(-1, 1), parameters

    def _generate(self, params: dict[str, Any], *, seed: int, progress, cancel) -> Generation:
        reporter = StepReporter(params["steps"], progress, cancel)
        reporter.check_cancel()
        notes = [note for note in [motion_words_note(params["prompt"])] if note]
        for note in notes:
            warnings.warn(note, stacklevel=3)
        try:
            clips, record = self.sample(params["batch"], prompt=params["prompt"],
                                        negative_prompt=params["negative_prompt"], frames=params["frames"],
                                        steps=params["steps"], guidance=params["guidance"], sampler=params["sampler"],
                                        schedule=params["schedule"], seed=seed,
                                        progress=lambda info: reporter.step(total=info["total"]))
        except ValueError as error:
            if "prompt" in str(error) or "concept" in str(error):  # the composition parser's messages
                raise ParameterError("prompt", str(error)) from None
            raise
        return Generation([to_frames(clip) for clip in clips], record)

    def save_outputs(self, generation: Generation, out_dir: str | Path) -> list[Path]:
        return save_clips(generation.items, generation.parameters, out_dir)
