"""Image input/output: tensors <-> PIL images, PNGs with generation metadata, grids, init images and masks.

Conventions used throughout noisecraft's image modality:

* pixel tensors are float ``[C, H, W]`` (or ``[B, C, H, W]``) in ``[-1, 1]`` with ``C`` = 1 (grey) or 3 (RGB);
  the uint8 mapping is ``u = round((x + 1) * 127.5)``, so uint8 -> float -> uint8 is exact;
* sizes in messages and in the ``Size:`` field are written ``WIDTHxHEIGHT`` (the AUTOMATIC1111 convention);
* every PNG written here is reproducible bit for bit: no timestamps (Pillow writes no ``tIME`` chunk unless asked),
  sorted JSON keys, and files are written to a temporary name and renamed so readers never see half a file.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps
from PIL.PngImagePlugin import PngInfo

__all__ = [
    "ImageReadError",
    "open_image",
    "resize_and_crop",
    "pil_to_uint8",
    "uint8_to_float",
    "to_pil",
    "parameters_text",
    "save_png",
    "read_parameters",
    "make_grid",
    "save_grid",
    "load_image",
    "load_mask",
]

# Exceptions Pillow raises for files it cannot decode (truncated data, bad chunks, not an image at all, ...).
_PILLOW_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)

# AUTOMATIC1111 "infotext" names for the keys it knows, in the order it writes them; other keys follow, sorted.
_INFOTEXT_NAMES = {"steps": "Steps", "sampler": "Sampler", "cfg_scale": "CFG scale", "seed": "Seed"}


class ImageReadError(ValueError):
    """A file exists but Pillow cannot decode it."""


# ----------------------------------------------------------------------------------------------------------------
# Reading and converting


def open_image(path: str | os.PathLike, *, channels: int = 3, role: str = "image") -> Image.Image:
    """Open, fully decode and convert an image file to mode ``"L"`` (channels=1) or ``"RGB"`` (channels=3).

    Decoding everything (not just the header) is what catches truncated files. EXIF rotation is applied so photos
    appear upright, and transparent pixels are composited onto white rather than whatever colour they hide.
    ``role`` names the file in error messages (``"image"``, ``"init image"``, ``"mask"``).
    """
    _check_channels(channels)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such {role} file: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
    except _PILLOW_READ_ERRORS as error:
        reason = str(error) or type(error).__name__
        raise ImageReadError(f"cannot read {role} {path}: {reason}") from None
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return image.convert("L" if channels == 1 else "RGB")


def resize_and_crop(image: Image.Image, size: tuple[int, int], *, center_crop: bool = True) -> Image.Image:
    """Resize ``image`` to ``size = (height, width)``.

    With ``center_crop`` the image is scaled (Lanczos) until it covers the target, keeping its aspect ratio, and the
    centre is cut out; without it the image is stretched to the target. An image already at the target is returned
    untouched so that no resampling blur is added.
    """
    height, width = size
    if image.size == (width, height):
        return image
    if not center_crop:
        return image.resize((width, height), Image.Resampling.LANCZOS)
    scale = max(width / image.width, height / image.height)
    scaled_width = max(width, round(image.width * scale))
    scaled_height = max(height, round(image.height * scale))
    image = image.resize((scaled_width, scaled_height), Image.Resampling.LANCZOS)
    left, top = (scaled_width - width) // 2, (scaled_height - height) // 2
    return image.crop((left, top, left + width, top + height))


def pil_to_uint8(image: Image.Image) -> torch.Tensor:
    """PIL image in mode ``"L"`` or ``"RGB"`` -> uint8 tensor ``[C, H, W]``."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def uint8_to_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in ``[-1, 1]`` (inverse of the rounding in :func:`to_pil`)."""
    return pixels.to(torch.float32) / 127.5 - 1.0


def to_pil(x: torch.Tensor) -> Image.Image | list[Image.Image]:
    """Float tensor in ``[-1, 1]``, ``[C, H, W]`` -> one PIL image, ``[B, C, H, W]`` -> a list of them.

    Values are mapped with ``round((x + 1) * 127.5)`` and clamped to ``0..255``; ``C = 1`` gives a grey ``"L"``
    image, ``C = 3`` an ``"RGB"`` one.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"to_pil expects a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 4:
        return [to_pil(single) for single in x]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"to_pil expects [C, H, W] or [B, C, H, W] with C = 1 or 3, got shape {list(x.shape)}")
    x = x.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError("image tensor contains NaN or infinite values (did sampling diverge?)")
    pixels = ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    array = pixels.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)  # uint8 2-D -> "L", [H, W, 3] -> "RGB"


# ----------------------------------------------------------------------------------------------------------------
# PNG files with metadata


def parameters_text(parameters: dict[str, Any], *, width: int, height: int) -> str:
    """The human-readable AUTOMATIC1111-style "infotext" stored in the PNG ``parameters`` chunk.

    Layout: the prompt (if any) on the first line, ``Negative prompt: ...`` on the next (if any), then one line
    ``Steps: 20, Sampler: heun, CFG scale: 2.0, Seed: 1, Size: 16x16, Model: ..., <other keys>``. Values that
    contain separators are JSON-quoted; nested values (lists, dicts) appear only in the full JSON chunk.
    """
    lines = []
    if parameters.get("prompt"):
        lines.append(str(parameters["prompt"]))
    if parameters.get("negative_prompt"):
        lines.append(f"Negative prompt: {parameters['negative_prompt']}")
    fields = [(name, parameters[key]) for key, name in _INFOTEXT_NAMES.items() if key in parameters]
    fields.append(("Size", f"{width}x{height}"))
    if "model" in parameters:
        fields.append(("Model", parameters["model"]))
    shown = {*_INFOTEXT_NAMES, "prompt", "negative_prompt", "model"}
    for key in sorted(set(parameters) - shown):
        if parameters[key] is None or isinstance(parameters[key], (str, int, float, bool)):
            fields.append((key.replace("_", " ").capitalize(), parameters[key]))
    lines.append(", ".join(f"{name}: {_infotext_value(value)}" for name, value in fields))
    return "\n".join(lines)


def _infotext_value(value: Any) -> str:
    text = str(value)
    # A1111 quotes values that would otherwise break its "Name: value, Name: value" parsing.
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n\"") else text


def save_png(
    image: torch.Tensor | Image.Image,
    path: str | os.PathLike,
    parameters: dict[str, Any] | None = None,
    *,
    write_sidecar: bool = True,
) -> Path:
    """Write ``image`` as a PNG carrying its generation ``parameters``; return the path.

    Two text chunks are stored: ``parameters`` (the readable :func:`parameters_text` line that image viewers and
    A1111-aware tools show) and ``noisecraft`` (the full JSON, read back by :func:`read_parameters`). With
    ``write_sidecar`` the same JSON also goes to ``path.with_suffix(".json")``. Both files are written atomically.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"output path {path} must end in .png")
    pil = to_pil(image) if isinstance(image, torch.Tensor) else image
    if not isinstance(pil, Image.Image):
        raise TypeError(f"save_png expects one image ([C, H, W] tensor or PIL image), got {type(image).__name__}")
    parameters = dict(parameters or {})
    parameters_json = _to_json(parameters)
    info = PngInfo()
    info.add_text("parameters", parameters_text(parameters, width=pil.width, height=pil.height))
    info.add_text("noisecraft", parameters_json)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", pnginfo=info)
    _write_atomically(path, buffer.getvalue())
    if write_sidecar:
        _write_atomically(path.with_suffix(".json"), (_to_json(parameters, indent=2) + "\n").encode("utf-8"))
    return path


def read_parameters(path: str | os.PathLike) -> dict[str, Any]:
    """Read back the ``parameters`` dict that :func:`save_png` stored in a PNG's ``noisecraft`` chunk."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        with Image.open(path) as image:
            image.load()  # text chunks after the pixel data are only parsed once the image is read
            chunks = dict(getattr(image, "text", {}))
    except _PILLOW_READ_ERRORS as error:
        raise ImageReadError(f"cannot read image {path}: {error}") from None
    if "noisecraft" not in chunks:
        raise ValueError(f"{path} has no noisecraft metadata (it was not written by noisecraft's save_png)")
    return json.loads(chunks["noisecraft"])


def _to_json(parameters: dict[str, Any], indent: int | None = None) -> str:
    try:
        return json.dumps(parameters, sort_keys=True, indent=indent, ensure_ascii=False, allow_nan=True)
    except TypeError as error:
        message = f"image parameters must be JSON-serialisable (numbers, strings, lists, dicts): {error}"
        raise TypeError(message) from None


def _write_atomically(path: Path, data: bytes) -> None:
    # Write to a temporary file in the same directory, then rename: readers see the old file or the new one, never
    # a partial one, even if the process is killed mid-write. (A plain open() keeps the user's umask permissions,
    # unlike tempfile.mkstemp's 0600.)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------------------------------------------
# Grids


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile ``images [B, C, H, W]`` into one ``[C, H', W']`` tensor with ``nrow`` images per row.

    As in torchvision, ``nrow`` counts images per row, ``padding`` pixels of ``pad_value`` (in the images' own
    ``[-1, 1]`` range; 1 = white) surround every tile, and an incomplete last row is filled with ``pad_value``.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"make_grid expects a [B, C, H, W] tensor, got {shape}")
    if images.shape[0] == 0:
        raise ValueError("make_grid got an empty batch (B = 0)")
    if not isinstance(nrow, int) or nrow < 1 or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"make_grid needs nrow >= 1 and padding >= 0, got nrow={nrow!r}, padding={padding!r}")
    count, channels, height, width = images.shape
    columns = min(nrow, count)
    rows = math.ceil(count / columns)
    grid = images.new_full(
        (channels, rows * (height + padding) + padding, columns * (width + padding) + padding), pad_value
    )
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        top, left = padding + row * (height + padding), padding + column * (width + padding)
        grid[:, top : top + height, left : left + width] = image
    return grid


def save_grid(
    images: torch.Tensor,
    path: str | os.PathLike,
    nrow: int = 8,
    parameters: dict[str, Any] | None = None,
    labels: list[str] | None = None,
    upscale: int = 1,
    *,
    padding: int = 2,
    pad_value: float = 1.0,
    write_sidecar: bool = True,
) -> Path:
    """Save ``images [B, C, H, W]`` as one grid PNG (``nrow`` per row) with metadata, like :func:`save_png`.

    ``upscale`` enlarges the grid by an integer factor with nearest-neighbour sampling, so tiny samples (16x16
    digits) stay crisp and visible. ``labels``, one per row, are drawn in a white margin on the left with Pillow's
    default font.
    """
    if not isinstance(upscale, int) or upscale < 1:
        raise ValueError(f"upscale must be a positive integer, got {upscale!r}")
    grid = make_grid(images, nrow=nrow, padding=padding, pad_value=pad_value)
    columns = min(nrow, images.shape[0])
    rows = math.ceil(images.shape[0] / columns)
    if labels is not None and len(labels) != rows:
        raise ValueError(
            f"got {len(labels)} row labels for a grid of {rows} rows ({images.shape[0]} images, {nrow} per row)"
        )
    pil = to_pil(grid)
    if upscale > 1:
        pil = pil.resize((pil.width * upscale, pil.height * upscale), Image.Resampling.NEAREST)
    if labels is not None:
        tile_height = images.shape[2]
        row_centres = [(padding + row * (tile_height + padding) + tile_height / 2) * upscale for row in range(rows)]
        pil = _draw_row_labels(pil, [str(label) for label in labels], row_centres)
    return save_png(pil, path, parameters, write_sidecar=write_sidecar)


def _draw_row_labels(grid: Image.Image, labels: list[str], row_centres: list[float]) -> Image.Image:
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(grid)
    boxes = [measure.textbbox((0, 0), label, font=font) for label in labels]
    gap = 4
    margin = max(box[2] for box in boxes) + 2 * gap
    white, black = (255, 0) if grid.mode == "L" else ((255, 255, 255), (0, 0, 0))
    labelled = Image.new(grid.mode, (grid.width + margin, grid.height), white)
    labelled.paste(grid, (margin, 0))
    draw = ImageDraw.Draw(labelled)
    for label, box, centre in zip(labels, boxes, row_centres):
        draw.text((gap, centre - (box[1] + box[3]) / 2), label, fill=black, font=font)
    return labelled


# ----------------------------------------------------------------------------------------------------------------
# Init images and masks (img2img, inpainting)


def load_image(
    path: str | os.PathLike,
    *,
    size: int | tuple[int, int] | None = None,
    channels: int = 3,
    resize: bool = False,
    role: str = "image",
) -> torch.Tensor:
    """Load an image file as a float tensor ``[C, H, W]`` in ``[-1, 1]``.

    ``size`` (an int for square, or ``(height, width)``) is the size the caller needs: a mismatch is an error unless
    ``resize`` is set, in which case the image is scaled and centre-cropped to it. ``role`` names the file in error
    messages (e.g. ``"init image"``).
    """
    image = open_image(path, channels=channels, role=role)
    if size is not None:
        image = _match_size(image, path, size=size, resize=resize, role=role)
    return uint8_to_float(pil_to_uint8(image))


def load_mask(
    path: str | os.PathLike,
    size: int | tuple[int, int],
    *,
    resize: bool = False,
) -> torch.Tensor:
    """Load an inpainting mask as a bool tensor ``[1, H, W]``: white (grey level >= 0.5) = True = regenerate."""
    image = open_image(path, channels=1, role="mask")
    image = _match_size(image, path, size=size, resize=resize, role="mask")
    return pil_to_uint8(image) >= 128


def _match_size(
    image: Image.Image, path: str | os.PathLike, *, size: int | tuple[int, int], resize: bool, role: str
) -> Image.Image:
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if not all(isinstance(n, int) and n > 0 for n in (height, width)):
        raise ValueError(f"size must be a positive int or (height, width), got {size!r}")
    if image.size == (width, height):
        return image
    if not resize:
        raise ValueError(
            f"{role} {path} is {image.width}x{image.height}, expected {width}x{height}; pass --resize or resize it"
        )
    return resize_and_crop(image, (height, width))


def _check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
