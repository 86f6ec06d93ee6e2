"""Opt-in sampling speed-ups (noisecraft/images/speed.py): same values, deterministic, wired to the CLI."""

from __future__ import annotations

import pytest
import torch

from noisecraft.images.pipeline import ImagePipeline
from noisecraft.images.speed import speed_up


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from noisecraft.images.training import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("speed") / "tiny")


def test_channels_last_keeps_the_images_and_the_bits(tiny):
    plain, _ = ImagePipeline.load(tiny).sample(3, labels=[1, 2, 3], steps=3, seed=4)
    fast = speed_up(ImagePipeline.load(tiny), channels_last=True)
    weight = next(p for p in fast.model.net.parameters() if p.ndim == 4 and p.shape[1] > 1 and p.shape[-1] > 1)
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    first, _ = fast.sample(3, labels=[1, 2, 3], steps=3, seed=4)
    again, _ = fast.sample(3, labels=[1, 2, 3], steps=3, seed=4)
    assert torch.equal(first, again)
    assert (first - plain).abs().max() < 1e-4  # the same function; only the summation order may differ
    assert fast.model.net.state_dict().keys() == ImagePipeline.load(tiny).model.net.state_dict().keys()


def test_compile_wraps_the_network_once(tiny):
    pipeline = speed_up(ImagePipeline.load(tiny), compile=True)
    compiled = pipeline.model.denoiser.net
    assert hasattr(compiled, "_orig_mod") and compiled.config is compiled._orig_mod.config
    assert speed_up(pipeline, compile=True).model.denoiser.net is compiled


def test_sample_command_takes_the_options(tiny, tmp_path):
    from typer.testing import CliRunner

    from noisecraft.cli import build_app

    result = CliRunner().invoke(build_app(), ["sample", str(tiny), "-n", "2", "--steps", "2", "--channels-last",
                                              "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "out").glob("*.png"))) >= 2
    help_text = CliRunner().invoke(build_app(), ["generate", "--help"]).output
    assert "--channels-last" in help_text and "--compile" in help_text
