"""Image datasets: folders of image files and scikit-learn's bundled 8x8 digits, and the registry of training data
names (``"digits"``, ``"shapes"``, or an image folder path) behind ``ImageTrainConfig.data``.

Every dataset yields the same item format, so ``torch.utils.data.default_collate`` batches them directly::

    {"image": float tensor [C, H, W] in [-1, 1],
     "label": int,          # only when the dataset has class labels
     "caption": str,        # only when the dataset has captions ("" for an image without one)
     "index": int}

and exposes ``class_names`` (``[]`` without labels), ``num_classes``, ``shape`` (``(C, H, W)``), ``captions``
(``None`` without captions) and ``random_flip``.

Random horizontal flips are *not* applied inside ``__getitem__``: items stay a pure function of their index, and
the flip is drawn by :func:`random_hflip` from the trainer's generator inside the loss closure. The trainer
checkpoints that generator, so a resumed run flips exactly as the uninterrupted run would have, which a per-worker
or per-item RNG in the data loader would not guarantee. ``dataset.random_flip`` tells the pipeline whether to do it.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from noisecraft.images.io import ImageReadError, open_image, pil_to_uint8, resize_and_crop, to_pil, uint8_to_float

__all__ = [
    "DataError",
    "IMAGE_EXTENSIONS",
    "ImageFolderDataset",
    "TensorImageDataset",
    "build_image_data",
    "check_resolution",
    "data_suffix",
    "digits_dataset",
    "image_data_names",
    "item_shape",
    "load_dataset",
    "register_image_data",
    "random_hflip",
    "export_image_folder",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
METADATA_FILE = "metadata.jsonl"
DIGITS_TEST_FRACTION = 0.2


class DataError(ValueError):
    """A dataset cannot be built from what is on disk; the message says what is wrong and how to fix it."""


def check_resolution(resolution: Any) -> None:
    """``resolution`` is None (the data's own size) or a positive pixel count; 0 must not mean "the default"."""
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1):
        raise DataError(f"resolution must be a positive integer (pixels per side) or unset, got {resolution!r}")


def item_shape(dataset: Dataset) -> tuple[int, ...]:
    """The ``(C, H, W)`` of ``dataset``'s images: its ``shape`` attribute, else that of its first item (datasets
    from outside this module, such as the shapes world, need not declare one)."""
    shape = getattr(dataset, "shape", None)
    return tuple(shape) if shape is not None else tuple(dataset[0]["image"].shape)


class _ImageItems(Dataset):
    """The item format and attributes shared by all image datasets (see the module docstring)."""

    shape: tuple[int, int, int]  # (C, H, W) of every item's image; height and width may differ
    class_names: list[str]
    labels: list[int] | None
    captions: list[str] | None
    random_flip: bool

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _item(self, index: int, image: torch.Tensor) -> dict[str, Any]:
        item: dict[str, Any] = {"image": image, "index": index}
        if self.labels is not None:
            item["label"] = self.labels[index]
        if self.captions is not None:
            item["caption"] = self.captions[index]
        return item

    def _check_index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        return index % len(self)


class ImageFolderDataset(_ImageItems):
    """Images found recursively under ``root`` (sorted by relative path, so the order is deterministic).

    * **labels**: when every image lies in a first-level sub-folder, the sorted sub-folder names are the
      ``class_names`` and an image's label is its folder's index; images directly in ``root`` mean no labels.
    * **captions**: from ``root/metadata.jsonl`` (Hugging Face ``imagefolder`` convention, one
      ``{"file_name": "cat/1.png", "text": "..."}`` per line, ``file_name`` relative to ``root``), else from a
      ``.txt`` file next to the image with the same stem.
    * **size**: ``resolution=N`` scales the shorter side to N and centre-crops N x N (``center_crop=False``
      stretches to N x N instead); without it all images must already share one size.

    Every file is fully decoded here, so unreadable files and size mismatches fail now, not mid-training. With
    ``skip_bad`` unreadable files are left out instead and listed in ``skipped`` as ``(path, reason)``.
    ``in_memory`` keeps the preprocessed uint8 pixels (C*H*W bytes per image) instead of re-decoding each item.
    Hidden files and folders (names starting with ".") are ignored.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        resolution: int | None = None,
        channels: int = 3,
        center_crop: bool = True,
        random_flip: bool = False,
        skip_bad: bool = False,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
        in_memory: bool = True,
    ):
        check_resolution(resolution)
        if channels not in (1, 3):
            raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"no such directory: {self.root}")
        self.resolution, self.channels, self.center_crop = resolution, channels, center_crop
        self.random_flip = random_flip
        extensions = tuple(extension.lower() for extension in extensions)
        candidates = _find_images(self.root, extensions)
        if not candidates:
            raise DataError(f"no images found in {self.root} (looked for {', '.join(extensions)})")
        captions_by_file = _read_metadata(self.root, candidates)

        self.files: list[Path] = []
        self.skipped: list[tuple[Path, str]] = []
        pixels, sizes = [], []
        for path in candidates:
            try:
                image = open_image(path, channels=channels)
            except ImageReadError as error:
                if not skip_bad:
                    raise DataError(f"{error}; pass --skip-bad to skip unreadable files") from None
                self.skipped.append((path, str(error)))
                continue
            self.files.append(path)
            sizes.append(image.size)
            if in_memory:
                pixels.append(pil_to_uint8(self._preprocess(image)))
        if self.skipped:
            warnings.warn(self._skipped_message(), stacklevel=2)
        if not self.files:
            raise DataError(f"no readable images in {self.root} ({len(self.skipped)} unreadable files skipped)")
        if resolution is None and len(set(sizes)) > 1:
            second = next(i for i, size in enumerate(sizes) if size != sizes[0])
            raise DataError(
                f"images have different sizes ({_size(sizes[0])} in {self._relative(0)}, {_size(sizes[second])} in "
                f"{self._relative(second)}); pass --resolution N to resize"
            )
        self._pixels = pixels if in_memory else None
        width, height = (resolution, resolution) if resolution is not None else sizes[0]
        self.shape = (channels, height, width)
        self.class_names, self.labels = _folder_labels(self.root, self.files)
        self.captions = _captions(self.files, [self._relative(i) for i in range(len(self.files))], captions_by_file)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        if self._pixels is not None:
            pixels = self._pixels[index]
        else:
            try:
                pixels = pil_to_uint8(self._preprocess(open_image(self.files[index], channels=self.channels)))
            except (ImageReadError, FileNotFoundError) as error:
                raise DataError(f"{error} (it was readable when the dataset was built)") from None
        return self._item(index, uint8_to_float(pixels))

    def _preprocess(self, image: Image.Image) -> Image.Image:
        if self.resolution is None:
            return image
        return resize_and_crop(image, (self.resolution, self.resolution), center_crop=self.center_crop)

    def _relative(self, index: int) -> str:
        return self.files[index].relative_to(self.root).as_posix()

    def _skipped_message(self, shown: int = 5) -> str:
        """One warning for all of ``skipped``: the first ``shown`` files, each with why it could not be read (so it
        can be fixed or deleted), then how many more."""
        def described(path: Path, error: str) -> str:
            reason = error.removeprefix(f"cannot read image {path}: ")  # open_image's message names the path
            return f"{path.relative_to(self.root).as_posix()} ({reason})"

        names = [described(path, error) for path, error in self.skipped[:shown]]
        more = len(self.skipped) - len(names)
        return (f"skipped {len(self.skipped)} unreadable image file(s) in {self.root}: {', '.join(names)}"
                + (f" and {more} more" if more else ""))


class TensorImageDataset(_ImageItems):
    """Images already in memory: ``images [N, C, H, W]`` in ``[-1, 1]``, optional ``labels [N]`` and captions."""

    def __init__(
        self,
        images: torch.Tensor,
        *,
        labels: torch.Tensor | Sequence[int] | None = None,
        class_names: Sequence[str] = (),
        captions: Sequence[str] | None = None,
    ):
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise DataError("images must be a [N, C, H, W] tensor")
        for name, values in (("labels", labels), ("captions", captions)):
            if values is not None and len(values) != len(images):
                raise DataError(f"got {len(values)} {name} for {len(images)} images")
        self.images = images
        self.labels = [int(label) for label in labels] if labels is not None else None
        self.class_names = list(class_names)
        self.captions = list(captions) if captions is not None else None
        self.shape = tuple(images.shape[1:])
        self.random_flip = False

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = self._check_index(index)
        return self._item(index, self.images[index])


def digits_dataset(resolution: int | None = 16, split: str = "all", seed: int = 0) -> TensorImageDataset:
    """scikit-learn's bundled handwritten digits (1,797 grey 8x8 images, labels 0-9) as a ready dataset.

    Pixel values 0..16 are scaled to ``[-1, 1]`` (background -1, ink +1) and upsampled bilinearly to
    ``resolution`` (``None`` keeps 8x8). ``split`` is ``"all"``, or the ``"train"`` / ``"test"`` side of a fixed
    80/20 split, stratified by digit and drawn with ``seed``.
    """
    from sklearn.datasets import load_digits  # local import: scikit-learn is only needed for this toy dataset

    if split not in ("all", "train", "test"):
        raise DataError(f"split must be 'all', 'train' or 'test', got {split!r}")
    check_resolution(resolution)
    digits = load_digits()
    images = torch.from_numpy(digits.images).to(torch.float32)[:, None] / 16.0 * 2.0 - 1.0
    if resolution is not None and resolution != images.shape[-1]:
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", antialias=True)
        images = images.clamp(-1.0, 1.0)
    labels = torch.from_numpy(digits.target).to(torch.long)
    if split != "all":
        test = _stratified_test_mask(digits.target, test_fraction=DIGITS_TEST_FRACTION, seed=seed)
        keep = torch.from_numpy(test if split == "test" else ~test)
        images, labels = images[keep], labels[keep]
    return TensorImageDataset(images.contiguous(), labels=labels, class_names=[str(digit) for digit in range(10)])


def load_dataset(spec: str | os.PathLike, **options: Any) -> Dataset:
    """``"digits"`` (or ``"digits:train"`` / ``"digits:test"``) -> :func:`digits_dataset`; a directory ->
    :class:`ImageFolderDataset`. ``options`` go to it."""
    name, _, split = str(spec).partition(":")
    if name == "digits" and split in ("", "all", "train", "test"):
        factory = digits_dataset
        if split:
            options = options | {"split": split}
    elif Path(spec).is_dir():
        factory = ImageFolderDataset
    else:
        raise DataError(
            f"unknown dataset {str(spec)!r}: expected 'digits', 'digits:train', 'digits:test' or an image folder "
            f"(no such directory: {spec})"
        )
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(accepted) - {"root"})
    if unknown:
        raise TypeError(
            f"option(s) {', '.join(unknown)} do not apply to dataset {str(spec)!r}; "
            f"it accepts {', '.join(name for name in accepted if name != 'root')}"
        )
    return factory(**options) if factory is digits_dataset else factory(spec, **options)


# ----------------------------------------------------------------------------------------------------------------
# Training data by name: ImageTrainConfig.data -> dataset. A table instead of branches, so a new data source is one
# register_image_data call and the "unknown data" error lists exactly what exists.

ImageDataBuilder = Callable[[Any], Dataset]
_IMAGE_DATA: dict[str, ImageDataBuilder] = {}


def register_image_data(name: str, builder: ImageDataBuilder) -> None:
    """Make ``data=name`` (and ``name:suffix``) mean ``builder(config)``.

    ``config`` is the run's ``ImageTrainConfig`` (``data``, ``resolution`` -- already checked --, ``channels``,
    ``random_flip``, ``skip_bad``, ``world``, ``num_examples``, ``train``); the builder reads its own ``:suffix``
    from ``config.data`` with :func:`data_suffix`. Names hold no ``:`` or ``/``: those tell suffixes and folder
    paths apart from names. Registering a name twice is an error rather than a silent replacement.
    """
    if not name or any(char in name for char in {":", "/", os.sep}):
        raise ValueError(f"a data name must be non-empty and hold no ':' or path separator, got {name!r}")
    if name in _IMAGE_DATA:
        raise ValueError(f"image data {name!r} is already registered")
    _IMAGE_DATA[name] = builder


def image_data_names() -> list[str]:
    """Registered data names, sorted (an image folder path is accepted besides these)."""
    return sorted(_IMAGE_DATA)


def build_image_data(config: Any) -> Dataset:
    """The training dataset of ``config.data``: a registered name (before any ``:suffix``), else an image folder.

    Anything with a path separator is taken as a folder, so a mistyped path reports "no such directory"; a bare
    unknown word is more likely a misspelt name, so its error lists the names.
    """
    check_resolution(config.resolution)
    data = str(config.data)
    name = data.partition(":")[0]
    if name in _IMAGE_DATA:
        return _IMAGE_DATA[name](config)
    if Path(data).is_dir() or any(separator in data for separator in {"/", os.sep}):
        return _folder_data(config)
    raise DataError(f"unknown data {data!r}: use one of {', '.join(image_data_names())}, or an image folder path; "
                    f"no folder named {data!r} exists")


def data_suffix(data: str, choices: Sequence[str]) -> str:
    """The ``:suffix`` of ``data`` (``"digits:train"`` -> ``"train"``, ``"digits"`` -> ``""``), one of ``choices``."""
    name, _, suffix = data.partition(":")
    if suffix not in choices:
        forms = ", ".join(f"{name}:{choice}" if choice else name for choice in choices)
        raise DataError(f"unknown data {data!r}: use {forms}")
    return suffix


def _digits_data(config: Any) -> TensorImageDataset:
    split = data_suffix(config.data, ("", "train", "test", "all")) or "all"
    if config.channels not in (None, 1):
        raise DataError("the digits dataset is grey: use --channels 1 (Python: channels=1) or leave it unset")
    return digits_dataset(resolution=config.resolution or 16, split=split)


def _shapes_data(config: Any) -> Dataset:
    """The procedural shapes world; imported here because ``noisecraft.shapes`` pulls in its analyzer (scipy)."""
    from noisecraft.shapes.world import ShapesDataset, ShapesWorldConfig

    data_suffix(config.data, ("",))
    if config.channels not in (None, 3):
        raise DataError("the shapes world is RGB: use --channels 3 (Python: channels=3) or leave it unset")
    world = ShapesWorldConfig.from_dict({"resolution": config.resolution or 32, **config.world})
    return ShapesDataset(config.num_examples, seed=config.train.get("seed", 0), config=world)


def _folder_data(config: Any) -> ImageFolderDataset:
    channels = 3 if config.channels is None else config.channels  # not `or 3`: channels=0 must fail, not mean RGB
    return ImageFolderDataset(config.data, resolution=config.resolution, channels=channels,
                              random_flip=config.random_flip, skip_bad=config.skip_bad)


register_image_data("digits", _digits_data)
register_image_data("shapes", _shapes_data)


def random_hflip(images: torch.Tensor, *, generator: torch.Generator | None, probability: float = 0.5) -> torch.Tensor:
    """Mirror each image of ``images [B, C, H, W]`` left-right with ``probability``, drawn from ``generator``.

    Called in the training loss closure with the trainer's checkpointed generator (see the module docstring).
    """
    draw_device = generator.device if generator is not None else images.device
    flip = torch.rand(images.shape[0], generator=generator, device=draw_device) < probability
    flip = flip.to(images.device).view(-1, *([1] * (images.ndim - 1)))
    return torch.where(flip, images.flip(-1), images)


def export_image_folder(dataset: Dataset, out_dir: str | os.PathLike) -> Path:
    """Write every item of ``dataset`` as a PNG under ``out_dir`` so the training data can be looked at.

    Labelled items go into one sub-folder per class name and captions into ``metadata.jsonl``, so the folder
    loads back with :class:`ImageFolderDataset` to the same labels and captions.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"output directory {out_dir} is not empty; choose a new directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    class_names = list(getattr(dataset, "class_names", []))
    metadata = []
    for position in range(len(dataset)):
        item = dataset[position]
        name = f"{item.get('index', position):06d}.png"
        relative = Path(class_names[item["label"]], name) if "label" in item and class_names else Path(name)
        (out_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        to_pil(item["image"]).save(out_dir / relative, format="PNG")
        if "caption" in item:
            metadata.append({"file_name": relative.as_posix(), "text": item["caption"]})
    if metadata:
        lines = (json.dumps(record, ensure_ascii=False) + "\n" for record in metadata)
        (out_dir / METADATA_FILE).write_text("".join(lines), encoding="utf-8")
    return out_dir


# ----------------------------------------------------------------------------------------------------------------
# Folder scanning helpers


def _find_images(root: Path, extensions: tuple[str, ...]) -> list[Path]:
    found = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
        visible = (name for name in files if not name.startswith("."))
        found += [Path(directory, name) for name in visible if name.lower().endswith(extensions)]
    return sorted(found, key=lambda path: path.relative_to(root).parts)


def _folder_labels(root: Path, files: list[Path]) -> tuple[list[str], list[int] | None]:
    parts = [path.relative_to(root).parts for path in files]
    if any(len(part) == 1 for part in parts):
        if any(len(part) > 1 for part in parts):
            warnings.warn(f"images lie both in {root} and in its sub-folders; class labels are disabled", stacklevel=3)
        return [], None
    class_names = sorted({part[0] for part in parts})
    index_of = {name: index for index, name in enumerate(class_names)}
    return class_names, [index_of[part[0]] for part in parts]


def _read_metadata(root: Path, candidates: list[Path]) -> dict[str, str]:
    """Captions from ``root/metadata.jsonl`` keyed by the image path relative to ``root`` (posix form)."""
    metadata_path = root / METADATA_FILE
    if not metadata_path.is_file():
        return {}
    images = {path.relative_to(root).as_posix() for path in candidates}
    captions = {}
    for number, line in enumerate(metadata_path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{METADATA_FILE} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: invalid JSON: {error}") from None
        if not isinstance(record, dict) or "file_name" not in record:
            raise DataError(f'{where}: missing "file_name" key (expected {{"file_name": "a.png", "text": "..."}})')
        file_name = Path(str(record["file_name"])).as_posix()
        if file_name not in images:
            problem = "is not an image file" if (root / file_name).is_file() else "not found"
            raise DataError(f"{where}: file_name {file_name!r} {problem} in {root}")
        text = record.get("text", record.get("caption"))
        if text is not None:
            captions[file_name] = str(text)
    return captions


def _captions(files: list[Path], relative_names: list[str], captions_by_file: dict[str, str]) -> list[str] | None:
    """One caption per image: metadata.jsonl first, else a same-stem .txt sidecar; None when no image has one."""
    captions: list[str | None] = []
    for path, relative in zip(files, relative_names):
        sidecar = path.with_suffix(".txt")
        if relative in captions_by_file:
            captions.append(captions_by_file[relative])
        elif sidecar.is_file():
            captions.append(sidecar.read_text(encoding="utf-8").strip())
        else:
            captions.append(None)
    missing = captions.count(None)
    if missing == len(captions):
        return None
    if missing:
        warnings.warn(f"{missing} of {len(captions)} images have no caption; they get an empty one", stacklevel=3)
    return [caption or "" for caption in captions]


def _stratified_test_mask(targets: np.ndarray, *, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask choosing ``test_fraction`` of each class at random (numpy ``default_rng(seed)``)."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(targets), dtype=bool)
    for label in np.unique(targets):
        members = np.flatnonzero(targets == label)
        test[rng.permutation(members)[: round(test_fraction * len(members))]] = True
    return test


def _size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
