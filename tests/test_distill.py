"""Few-step distillation (noisecraft.distill): the consistency parameterization and sampler against exact answers,
a short distillation that reduces the 1-step error against the teacher's ODE solution, determinism, the student as
an ordinary model folder (load, sample 1..4 steps, CLI), the guidance knob and negative prompts, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from noisecraft.diffusion import samplers, schedules
from noisecraft.diffusion.config import DiffusionConfig
from noisecraft.diffusion.gmm import random_mixture
from noisecraft.diffusion.precond import EDMPrecond, edm_scalings
from noisecraft.distill import DistillConfig, distill
from noisecraft.distill.consistency import cm_sigmas, ode_step
from noisecraft.distill.progressive import ddim_step, round_plan
from noisecraft.images.pipeline import ImageDiffusionModel, ImagePipeline, make_spec
from noisecraft.nets.unet import unet_config
from noisecraft.training.checkpoint import export_model

RES = 8
DIGITS = [str(i) for i in range(10)]


def make_teacher(folder, *, seed: int = 0):
    """A small class-conditional 8x8 digits model with random (seeded) weights, written as a model folder.

    Untrained weights are a teacher as good as any for these tests: what is checked is that the student follows
    the teacher's own ODE, not image quality. The zero-initialised output layer is re-drawn, else D = c_skip x.
    """
    torch.manual_seed(seed)
    spec = make_spec(resolution=RES, channels=1, class_names=DIGITS, diffusion=DiffusionConfig.edm(cond_drop_prob=0.1),
                     unet=unet_config("tiny", resolution=RES), data="digits",
                     training={"data": "digits", "resolution": RES})
    model = ImageDiffusionModel(spec)
    torch.nn.init.normal_(model.net.conv_out.weight, std=0.05)
    export_model(folder, model=model, ema=model, model_config=spec.to_dict(), train_config={}, step=0)
    return folder


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return make_teacher(tmp_path_factory.mktemp("teacher") / "teacher")


# ------------------------------------------------------------------------------------------------- exact parts


def test_consistency_precond_boundary_and_cm_scalings():
    """f(x, sigma_min) = x exactly; for an EDM base the scalings are the CM paper's (Appendix C)."""
    config = DiffusionConfig.edm(consistency_sigma_min=0.002)
    net = lambda x, c_noise: torch.sin(3 * x) + c_noise[:, None]  # noqa: E731 (any network)
    f = config.make_denoiser(net)
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(f(x, 0.002), x)
    sigma = torch.tensor([0.01, 0.5, 3.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = f.scalings(sigma)
    torch.testing.assert_close(c_skip, 0.25 / ((sigma - 0.002) ** 2 + 0.25))
    torch.testing.assert_close(c_out, 0.5 * (sigma - 0.002) / (0.25 + sigma**2).sqrt())
    _, _, edm_c_in = edm_scalings(sigma, 0.5)
    torch.testing.assert_close(c_in, edm_c_in)
    torch.testing.assert_close(c_noise, EDMPrecond(net).scalings(sigma)[3])
    eps = DiffusionConfig.ddpm(consistency_sigma_min=0.01).make_denoiser(net)
    torch.testing.assert_close(eps(x, 0.01), x)


def test_consistency_sampler_is_algorithm_1():
    """One step is f(x, sigma_max); each further step re-noises x0 to the next level with fresh noise."""
    calls = []

    def f(x, sigma):
        calls.append(float(sigma[0]))
        return 0.5 * x

    x = torch.randn(4, 2, dtype=torch.float64)
    sigmas = torch.tensor([80.0, 2.0, 0.5, 0.0], dtype=torch.float64)
    out = samplers.sample_consistency(f, x, sigmas, generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    expected = 0.5 * x
    for level in (2.0, 0.5):
        expected = 0.5 * (expected + level * torch.randn(4, 2, generator=generator, dtype=torch.float64))
    torch.testing.assert_close(out, expected)
    assert calls == [80.0, 2.0, 0.5] and samplers.nfe("consistency", 3) == 3


def test_few_step_schedule_is_nested_and_ends_at_zero():
    fine, coarse = schedules.few_step(8, 0.002, 80.0), schedules.few_step(4, 0.002, 80.0)
    assert len(coarse) == 5 and coarse[0] == 80.0 and coarse[-1] == 0
    torch.testing.assert_close(fine[::2], coarse)
    torch.testing.assert_close(schedules.few_step(1, 0.002, 80.0), torch.tensor([80.0, 0.0], dtype=torch.float64))
    assert cm_sigmas(18, 0.002, 80.0)[[0, -1]].tolist() == pytest.approx([0.002, 80.0])


def test_ode_step_matches_the_engine_heun_and_euler():
    """The per-example teacher step equals the engine samplers' step for a shared sigma (exact GMM denoiser)."""
    gmm = random_mixture(dim=3, n_components=2, generator=torch.Generator().manual_seed(0))
    x = torch.randn(6, 3, dtype=torch.float64) * 5
    sigma, sigma_next = torch.full((6,), 5.0, dtype=torch.float64), torch.full((6,), 2.0, dtype=torch.float64)
    for solver, sampler in (("heun", samplers.sample_heun), ("euler", samplers.sample_euler)):
        expected = sampler(gmm.denoiser, x, torch.tensor([5.0, 2.0]))
        torch.testing.assert_close(ode_step(gmm.denoiser, x, sigma, sigma_next, solver), expected)
    denoised = gmm.denoiser(x, sigma)
    torch.testing.assert_close(ddim_step(x, denoised, sigma, sigma_next),
                               samplers.sample_ddim(gmm.denoiser, x, torch.tensor([5.0, 2.0])))


def test_round_plan():
    assert round_plan(16, 1) == [8, 4, 2, 1] and round_plan(8, 4) == [4]
    with pytest.raises(ValueError, match="power of two"):
        round_plan(12, 4)


# -------------------------------------------------------------------------------------------- distillation


def one_step_error(pipeline: ImagePipeline, reference: torch.Tensor) -> float:
    images, _ = pipeline.sample(16, labels=DIGITS + DIGITS[:6], steps=1, seed=7)
    return float((images - reference).square().mean())


def teacher_reference(teacher) -> tuple[torch.Tensor, float]:
    """The teacher's 16-step Heun ODE solution from the noise of seeds 7..22, and its own 1-step error."""
    pipeline = ImagePipeline.load(teacher)
    reference, _ = pipeline.sample(16, labels=DIGITS + DIGITS[:6], steps=16, sampler="heun", seed=7)
    one, _ = pipeline.sample(16, labels=DIGITS + DIGITS[:6], steps=1, sampler="euler", seed=7)
    return reference, float((one - reference).square().mean())


@pytest.mark.parametrize("method", ["consistency", "progressive"])
def test_short_distillation_reduces_the_one_step_error(teacher, tmp_path, method):
    """12 steps make the 1-step student much closer to the teacher's 16-step ODE solution (same noise) than the
    teacher's own 1 step, which is also what the untrained student does (it starts as the teacher's denoiser)."""
    reference, teacher_one_step = teacher_reference(teacher)
    options = dict(steps=12, batch_size=8, lr=3e-3, guidance_max=1.0, progress=False, student_steps=1)
    if method == "progressive":  # two rounds, 4 -> 2 -> 1 steps: it can only get as close as the 4 Euler steps
        options |= {"teacher_steps": 4}
    student = distill(teacher, tmp_path / "student", method=method, **options)
    error = one_step_error(ImagePipeline.load(student), reference)
    assert error < (0.6 if method == "consistency" else 0.8) * teacher_one_step, (teacher_one_step, error)


def test_same_seed_same_student_bits_and_resume(teacher, tmp_path):
    options = dict(steps=2, batch_size=4, progress=False)
    first, second = (distill(teacher, tmp_path / name, **options) for name in ("a", "b"))
    assert (first / "ema.safetensors").read_bytes() == (second / "ema.safetensors").read_bytes()
    other = distill(teacher, tmp_path / "c", seed=1, **options)
    assert (first / "ema.safetensors").read_bytes() != (other / "ema.safetensors").read_bytes()
    distill(teacher, tmp_path / "a", steps=3, resume=True, progress=False)  # one more step, same settings
    assert json.loads((first / "config.json").read_text())["step"] == 3
    with pytest.raises(FileExistsError, match="--resume"):
        distill(teacher, tmp_path / "a", **options)
    with pytest.raises(ValueError, match="keeps its stored settings"):
        distill(teacher, tmp_path / "a", steps=5, resume=True, lr=1.0)


def test_student_folder_loads_and_samples_one_to_four_steps(teacher, tmp_path):
    import noisecraft

    student = distill(teacher, tmp_path / "student", steps=2, batch_size=4, progress=False)
    config = json.loads((student / "config.json").read_text())["model_config"]
    assert config["kind"] == "image" and config["distillation"]["method"] == "consistency"
    assert config["distillation"]["teacher"] == str(teacher) and config["distillation"]["sampler"] == "consistency"
    pipeline = noisecraft.load(student, safety=False)
    defaults = {p.name: p.default for p in pipeline.parameters()}
    assert (defaults["steps"], defaults["sampler"], defaults["schedule"]) == (4, "consistency", "few_step")
    for steps in (1, 2, 3, 4):
        generation = pipeline.generate({"n": 2, "labels": ["3"], "steps": steps, "guidance": 2.0}, seed=0)
        assert generation.parameters["nfe"] == 2 * steps and generation.items.shape == (2, 1, RES, RES)
        assert torch.isfinite(generation.items).all()


def test_guidance_knob_reaches_the_network(teacher, tmp_path):
    student = distill(teacher, tmp_path / "student", steps=3, batch_size=8, lr=1e-2, progress=False)
    pipeline = ImagePipeline.load(student)
    assert pipeline.model.net.guidance_proj.weight.abs().sum() > 0  # learned away from its zero start
    x, sigma = torch.randn(2, 1, RES, RES), torch.full((2,), 1.0)
    labels = torch.tensor([3, 5])
    low, high = (pipeline.model(x, sigma, class_labels=labels, guidance=w) for w in (1.0, 4.0))
    assert not torch.allclose(low, high)
    images = [pipeline.sample(2, labels=["3", "5"], steps=2, guidance=w, seed=0)[0] for w in (1.0, 4.0)]
    assert not torch.allclose(*images)


def test_negative_prompt_changes_a_text_student(tmp_path):
    """A text-to-image student keeps negative prompts (the unconditional branch it was distilled with)."""
    from PIL import Image

    from noisecraft.api import train

    folder = tmp_path / "captioned"
    folder.mkdir()
    captions = {"red": (255, 0, 0), "blue": (0, 0, 255)}
    lines = []
    for i, (name, colour) in enumerate(captions.items()):
        Image.new("RGB", (8, 8), colour).save(folder / f"{i}.png")
        lines.append(json.dumps({"file_name": f"{i}.png", "text": f"a {name} square"}) + "\n")
    (folder / "metadata.jsonl").write_text("".join(lines))
    train({"data": str(folder), "out_dir": str(tmp_path / "t2i"), "preset": "tiny", "resolution": RES,
           "text_encoder": {"name": "learned", "dim": 16, "layers": 1, "heads": 2},
           "train": {"steps": 1, "batch_size": 2, "checkpoint_every": 0, "log_every": 1}}, progress=False)
    student = distill(tmp_path / "t2i", tmp_path / "student", steps=2, batch_size=2, negative_prob=1.0,
                      progress=False)
    pipeline = ImagePipeline.load(student)
    plain = pipeline.generate({"prompt": "a red square", "n": 1, "steps": 2}, seed=0)
    negative = pipeline.generate({"prompt": "a red square", "negative_prompt": "a blue square", "n": 1,
                                  "steps": 2}, seed=0)
    assert negative.parameters["negative_prompt"] == "a blue square"
    assert not torch.allclose(plain.items, negative.items)


# ----------------------------------------------------------------------------------------------------- bad input


def test_bad_input_one_line_errors(teacher, tmp_path):
    with pytest.raises(ValueError, match="--steps must be an integer >= 1"):
        distill(teacher, tmp_path / "s", steps=0)
    with pytest.raises(ValueError, match="give a budget"):
        distill(teacher, tmp_path / "s")
    with pytest.raises(ValueError, match="unknown distillation method 'magic'"):
        distill(teacher, tmp_path / "s", method="magic", steps=1)
    with pytest.raises(ValueError, match="power of two"):
        DistillConfig(teacher="t", method="progressive", student_steps=4, teacher_steps=12)
    table = tmp_path / "table"
    table.mkdir()
    (table / "config.json").write_text(json.dumps({"model_config": {"kind": "tabular"}, "step": 0}))
    (table / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="'tabular' model; `noisecraft distill` distils image models"):
        distill(table, tmp_path / "s", steps=1)
    assert not (tmp_path / "s").exists()


def run_cli(argv: list[str]) -> int:
    from noisecraft.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return exit_info.value.code


def test_cli_distill_help_and_errors(teacher, tmp_path, capsys):
    assert run_cli(["distill", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--out", "--method", "--minutes", "--steps", "--student-steps", "--batch", "--device",
                   "--resume"):
        assert option in text
    for argv, message in ((["--steps", "0"], "--steps must be an integer >= 1"),
                          (["--method", "magic", "--steps", "1"], "unknown distillation method")):
        assert run_cli(["distill", str(teacher), "-o", str(tmp_path / "s"), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1
    student = tmp_path / "student"
    assert run_cli(["distill", str(teacher), "-o", str(student), "--steps", "1", "--batch", "2"]) == 0
    assert run_cli(["sample", str(student), "--steps", "2", "-n", "2", "--label", "4", "-o",
                    str(tmp_path / "png")]) == 0
    from noisecraft.images.io import read_parameters

    record = read_parameters(tmp_path / "png" / "sample_0000.png")
    assert (record["sampler"], record["schedule"], record["steps"], record["nfe"]) == ("consistency", "few_step", 2, 2)
