"""Tests for noisecraft.images.io: tensor <-> PIL, PNG metadata, grids, init images and masks."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from noisecraft.images.io import (
    ImageReadError,
    load_image,
    load_mask,
    make_grid,
    parameters_text,
    read_parameters,
    save_grid,
    save_png,
    to_pil,
    uint8_to_float,
)

PARAMETERS = {"prompt": "a seven", "steps": 20, "sampler": "heun", "cfg_scale": 2.0, "seed": 1, "model": "runs/d"}


def png_chunk_types(data: bytes) -> list[bytes]:
    types, position = [], 8  # skip the PNG signature
    while position < len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        types.append(data[position + 4 : position + 8])
        position += 12 + length
    return types


def test_to_pil_maps_range_and_modes():
    grey = to_pil(torch.tensor([[[-1.0, 0.0, 1.0, 3.0, -7.0]]]))
    assert grey.mode == "L" and grey.size == (5, 1)
    assert list(np.asarray(grey)[0]) == [0, 128, 255, 255, 0]  # round((x+1)*127.5), clamped
    rgb = to_pil(torch.zeros(3, 4, 6))
    assert rgb.mode == "RGB" and rgb.size == (6, 4)
    batch = to_pil(torch.zeros(2, 1, 3, 3))
    assert isinstance(batch, list) and len(batch) == 2


def test_uint8_float_round_trip_is_exact():
    pixels = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    back = np.asarray(to_pil(uint8_to_float(pixels)))
    assert np.array_equal(back, pixels.permute(1, 2, 0).numpy())


@pytest.mark.parametrize("bad", [torch.zeros(2, 4, 4), torch.zeros(4, 4), torch.full((1, 2, 2), float("nan"))])
def test_to_pil_rejects_bad_tensors(bad):
    with pytest.raises(ValueError, match="to_pil expects|NaN"):
        to_pil(bad)


def test_parameters_text_is_a1111_style():
    text = parameters_text({**PARAMETERS, "negative_prompt": "blurry", "schedule": "karras, rho 7"}, width=16, height=8)
    lines = text.split("\n")
    assert lines[0] == "a seven" and lines[1] == "Negative prompt: blurry"
    assert lines[2].startswith("Steps: 20, Sampler: heun, CFG scale: 2.0, Seed: 1, Size: 16x8, Model: runs/d")
    assert lines[2].endswith('Schedule: "karras, rho 7"')  # separators inside values are quoted


def test_png_metadata_round_trip_and_sidecar(tmp_path):
    image = torch.linspace(-1, 1, 3 * 8 * 16).reshape(3, 8, 16)
    parameters = {**PARAMETERS, "prompt": "un sept \u2014 \u2713", "sigmas": [80.0, 1.0, 0.0]}  # non-Latin-1 too
    path = save_png(image, tmp_path / "out" / "sample.png", parameters)
    assert read_parameters(path) == parameters
    assert json.loads(path.with_suffix(".json").read_text()) == read_parameters(path)
    with Image.open(path) as png:
        assert "Size: 16x8" in png.text["parameters"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["sample.json", "sample.png"]  # no temporary files left


def test_same_tensor_gives_identical_png_bytes_without_timestamp(tmp_path):
    image = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1
    first = save_png(image, tmp_path / "a.png", PARAMETERS).read_bytes()
    second = save_png(image, tmp_path / "b.png", PARAMETERS).read_bytes()
    assert first == second
    assert b"tIME" not in png_chunk_types(first)


def test_save_png_errors(tmp_path):
    with pytest.raises(ValueError, match="must end in .png"):
        save_png(torch.zeros(1, 2, 2), tmp_path / "x.jpg", {})
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_png(torch.zeros(1, 2, 2), tmp_path / "x.png", {"net": torch.zeros(1)})


def test_read_parameters_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_parameters(tmp_path / "missing.png")
    Image.new("L", (2, 2)).save(tmp_path / "plain.png")
    with pytest.raises(ValueError, match="no noisecraft metadata"):
        read_parameters(tmp_path / "plain.png")


def test_make_grid_layout():
    images = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 1, 4, 6) / 10
    grid = make_grid(images, nrow=3, padding=2, pad_value=1.0)
    assert grid.shape == (1, 2 * (4 + 2) + 2, 3 * (6 + 2) + 2)
    assert grid[0, 2, 2] == 0.0 and grid[0, 2, 10] == 0.1 and grid[0, 8, 10] == 0.4  # row-major tiles
    assert (grid[0, 8:12, 18:24] == 1.0).all()  # the missing sixth tile is padding
    assert (grid[0, 0] == 1.0).all()
    with pytest.raises(ValueError, match="B, C, H, W"):
        make_grid(torch.zeros(1, 4, 4))


def test_save_grid_upscales_labels_and_keeps_metadata(tmp_path):
    images = torch.zeros(6, 1, 4, 4)
    plain = save_grid(images, tmp_path / "plain.png", nrow=3, parameters=PARAMETERS, upscale=4)
    with Image.open(plain) as png:
        assert png.size == ((3 * 6 + 2) * 4, (2 * 6 + 2) * 4)
    labelled = save_grid(images, tmp_path / "labelled.png", nrow=3, parameters=PARAMETERS, labels=["0", "1"], upscale=4)
    with Image.open(labelled) as png:
        assert png.height == (2 * 6 + 2) * 4 and png.width > (3 * 6 + 2) * 4
        assert (np.asarray(png)[:, :4] == 255).all()  # the label margin is white
        assert (np.asarray(png) < 128).any(axis=0)[: png.width - (3 * 6 + 2) * 4].any()  # and holds dark text
    assert read_parameters(labelled) == PARAMETERS
    with pytest.raises(ValueError, match="3 row labels for a grid of 2 rows"):
        save_grid(images, tmp_path / "bad.png", nrow=3, labels=["a", "b", "c"])


def test_load_image_round_trip_and_resize(tmp_path):
    pixels = torch.randint(0, 256, (3, 6, 6), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    save_png(uint8_to_float(pixels), tmp_path / "init.png", {})
    loaded = load_image(tmp_path / "init.png", size=6)
    assert torch.equal(loaded, uint8_to_float(pixels))
    assert load_image(tmp_path / "init.png", size=(4, 3), resize=True).shape == (3, 4, 3)
    assert load_image(tmp_path / "init.png", channels=1).shape == (1, 6, 6)


def test_load_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    (tmp_path / "noise.png").write_bytes(np.random.default_rng(0).bytes(200))
    with pytest.raises(ImageReadError, match="cannot read init image .*noise.png"):
        load_image(tmp_path / "noise.png", role="init image")
    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    expected = r"init image .*big.png is 64x64, expected 32x32; pass --resize or resize it"
    with pytest.raises(ValueError, match=expected):
        load_image(tmp_path / "big.png", size=32, role="init image")


def test_load_mask_thresholds_white_as_true(tmp_path):
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[:, 2:] = 255
    mask[0, 0], mask[0, 1] = 127, 128
    Image.fromarray(mask).save(tmp_path / "mask.png")
    loaded = load_mask(tmp_path / "mask.png", 4)
    assert loaded.dtype == torch.bool and loaded.shape == (1, 4, 4)
    assert loaded[0, :, 2:].all() and not loaded[0, 1:, :2].any()
    assert not loaded[0, 0, 0] and loaded[0, 0, 1]
    with pytest.raises(ValueError, match="mask .*mask.png is 4x4, expected 8x8"):
        load_mask(tmp_path / "mask.png", 8)
    assert load_mask(tmp_path / "mask.png", 8, resize=True).shape == (1, 8, 8)
