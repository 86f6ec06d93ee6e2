"""What the image commands write: the same command and seed give the same bytes; edits record what they started
from; an output folder with earlier files gets a warning."""

from __future__ import annotations

import hashlib
import json

import pytest
from PIL import Image

from noisecraft import registry
from noisecraft.cli import main
from noisecraft.images.io import read_parameters


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    return registry.get("image").resolve("tiny_model")(tmp_path_factory.mktemp("image") / "model")


def run(*args) -> int:
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in args])
    return stop.value.code


def digests(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_command_and_seed_give_the_same_files(image_model, tmp_path):
    for name in ("a", "b"):
        assert run("sample", image_model, "-n", 3, "--steps", 2, "--label", "3", "--seed", 5, "-o",
                   tmp_path / name) == 0
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
    parameters = read_parameters(tmp_path / "a" / "sample_0001.png")
    assert parameters["seed"] == 6 and "seconds" not in parameters


def test_sampling_into_a_folder_with_earlier_files_warns(image_model, tmp_path, capsys):
    assert run("sample", image_model, "-n", 1, "--steps", 1, "-o", tmp_path) == 0
    assert "warning" not in capsys.readouterr().err
    assert run("sample", image_model, "-n", 1, "--steps", 1, "-o", tmp_path) == 0
    err = capsys.readouterr().err
    assert "already holds 4 file(s) from an earlier run" in err and err.index("warning") < err.index("sampling")


def test_img2img_and_inpainting_record_their_inputs(tmp_path):
    Image.new("RGB", (32, 32), (200, 20, 20)).save(tmp_path / "init.png")
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (0, 0, 16, 32))
    mask.save(tmp_path / "mask.png")
    assert run("generate", "a blue square", "-n", 1, "--steps", 2, "--init-image", tmp_path / "init.png",
               "--mask", tmp_path / "mask.png", "-o", tmp_path / "out") == 0
    parameters = read_parameters(tmp_path / "out" / "sample_0000.png")
    for name in ("init_image", "mask"):
        recorded = parameters[name]
        assert recorded["path"] == str(tmp_path / f"{name.split('_')[0]}.png")
        assert recorded["sha256"] == hashlib.sha256((tmp_path / f"{name.split('_')[0]}.png").read_bytes()).hexdigest()
    assert parameters["inpainting"] is True and len(parameters["init_image_sha256"]) == 64
    json.dumps(parameters)  # the record stays plain JSON
