"""Writing generated clips: an animated GIF per clip (every frame at the model's resolution, the parameters and seed
in the GIF comment), a PNG strip of its frames (parameters in PNG text chunks), an MP4 when PyAV (``av``) is
installed, and ``generation.json`` with the full parameters, per-clip seeds, files and, for prompts of the moving-
shapes grammar, the motion analyser's verdict. Same clips and parameters -> same bytes (no timestamps).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from noisecraft.images.io import save_png
from noisecraft.training.checkpoint import atomic_write_bytes

FRAME_MS = 125  # 8 frames per second


def _json(parameters: dict[str, Any], **options) -> str:
    return json.dumps(parameters, sort_keys=True, default=str, **options)


def gif_bytes(frames: list[Image.Image], comment: dict[str, Any] | None = None, *, scale: int = 1) -> bytes:
    """An endlessly looping GIF of ``frames`` (each shown :data:`FRAME_MS` ms), ``scale`` x nearest-neighbour
    enlarged, with ``comment`` as JSON in the GIF comment extension."""
    if not frames:
        raise ValueError("a GIF needs at least one frame")
    if scale > 1:
        frames = [f.resize((f.width * scale, f.height * scale), Image.NEAREST) for f in frames]
    buffer = io.BytesIO()
    extra = {"comment": _json(comment, separators=(",", ":")).encode()} if comment else {}
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=FRAME_MS, loop=0,
                   disposal=1, optimize=False, **extra)
    return buffer.getvalue()


def read_gif(path: str | Path) -> tuple[list[Image.Image], dict[str, Any]]:
    """The RGB frames of a GIF and the JSON of its comment ({} when it has none)."""
    from PIL import ImageSequence

    with Image.open(path) as gif:
        comment = gif.info.get("comment", b"")
        frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(gif)]
    return frames, json.loads(comment) if comment else {}


def strip(frames: list[Image.Image]) -> Image.Image:
    """The frames side by side, left to right."""
    out = Image.new("RGB", (sum(f.width for f in frames), frames[0].height))
    x = 0
    for frame in frames:
        out.paste(frame, (x, 0))
        x += frame.width
    return out


def sheet_gif(clips: list[list[Image.Image]], comment: dict[str, Any] | None = None, *, scale: int = 4) -> bytes:
    """One GIF showing ``clips`` side by side (frame t of every clip in frame t), ``scale`` x enlarged: for a look
    (README, demo), not a per-clip output."""
    length = max(len(clip) for clip in clips)
    frames = [strip([clip[min(t, len(clip) - 1)] for clip in clips]) for t in range(length)]
    return gif_bytes(frames, comment, scale=scale)


def mp4_bytes(frames: list[Image.Image]) -> bytes | None:
    """An H.264 (or MPEG-4 part 2) MP4 of ``frames`` through PyAV, or None when ``av`` is not installed."""
    try:
        import av
    except ImportError:
        return None
    # Even sizes for yuv420p; nearest-neighbour so the pixels stay the model's.
    scale = 2 if frames[0].width % 2 or frames[0].height % 2 else 1
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=1000 // FRAME_MS)
        stream.width, stream.height = frames[0].width * scale, frames[0].height * scale
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"threads": "1"}  # one thread: the same bytes on every machine
        for frame in frames:
            image = frame.resize((stream.width, stream.height), Image.NEAREST) if scale > 1 else frame
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def analyse_clips(clips: list[list[Image.Image]], prompt: str | None) -> list[dict[str, Any]] | None:
    """The motion analyser's verdict per clip for a prompt of the moving-shapes grammar, else None."""
    from .world import analyze_clip, clip_matches, parse_prompt

    spec = parse_prompt(prompt) if isinstance(prompt, str) else None
    if spec is None:
        return None
    out = []
    for clip in clips:
        measured = analyze_clip(clip)
        out.append({"matches_prompt": clip_matches(spec, measured, frames=len(clip)),
                    "objects": [{"colour": m.colour, "shape": m.shape, "size": m.size, "motion": m.motion,
                                 "frames_seen": m.frames_seen} for m in measured]})
    return out


def save_clips(clips: list[list[Image.Image]], parameters: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the files of the module docstring into ``out_dir``; returns them (``generation.json`` last)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    items = []
    analyses = analyse_clips(clips, parameters.get("prompt"))
    for i, frames in enumerate(clips):
        record = parameters | {"seed": parameters["seed"] + i, "index": i, "batch_seed": parameters["seed"]}
        gif = out_dir / f"clip_{i:04d}.gif"
        atomic_write_bytes(gif, gif_bytes(frames, record))
        png = save_png(strip(frames), out_dir / f"clip_{i:04d}_frames.png", record, write_sidecar=False)
        item = {"index": i, "seed": record["seed"], "frames": len(frames), "gif": gif.name, "strip": png.name}
        files += [gif, png]
        mp4 = mp4_bytes(frames)
        if mp4 is not None:
            atomic_write_bytes(out_dir / f"clip_{i:04d}.mp4", mp4)
            files.append(out_dir / f"clip_{i:04d}.mp4")
            item["mp4"] = files[-1].name
        if analyses is not None:
            item["analysis"] = analyses[i]
        items.append(item)
    sidecar = out_dir / "generation.json"
    atomic_write_bytes(sidecar, (_json({"parameters": parameters, "clips": items}, indent=2) + "\n").encode())
    return files + [sidecar]
