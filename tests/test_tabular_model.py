"""Tabular diffusion: the joint network, the sigma <-> t clock, the joint loss and sampler, fit/sample/save/load,
conditional sampling and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from noisecraft.cli import main as cli_main
from noisecraft.diffusion.loss import LogNormalSigma
from noisecraft.tabular import TabularModel, fit
from noisecraft.diffusion.masked import unmask_step
from noisecraft.tabular.diffusion import JointProcess, TabularDenoiser, joint_loss, sample_rows
from noisecraft.tabular.net import TabularNet

TINY_NET = {"width": 64, "depth": 2, "token_dim": 8, "noise_channels": 16}


def tiny_denoiser(num_numeric=2, category_sizes=(3, 5)) -> TabularDenoiser:
    torch.manual_seed(0)
    return TabularDenoiser(TabularNet(num_numeric, list(category_sizes), **TINY_NET))


def two_cluster_table(num_rows: int = 256, seed: int = 0) -> pd.DataFrame:
    """``group`` decides the sign of ``x`` (x ~ N(+-3, 0.5)) and, mostly, ``size``; ``note`` has missing values."""
    rng = np.random.default_rng(seed)
    group = rng.choice(["left", "right"], num_rows)
    sign = np.where(group == "left", -1.0, 1.0)
    x = np.round(sign * 3 + 0.5 * rng.standard_normal(num_rows), 3)
    size = np.where(rng.random(num_rows) < 0.9, np.where(group == "left", "small", "large"), "medium")
    count = rng.integers(0, 1000, num_rows)
    note = np.where(rng.random(num_rows) < 0.2, np.nan, np.round(rng.random(num_rows), 2))
    return pd.DataFrame({"group": group, "x": x, "size": size, "count": count, "note": note,
                         "flag": rng.random(num_rows) < 0.5})


# --- network, clock, loss, sampler -----------------------------------------------------------------------------------


def test_net_shapes_and_padded_logits():
    denoiser = tiny_denoiser()
    tokens = torch.tensor([[0, 4], [5, 5]])  # 5 = mask_id = max(category sizes)
    x0_hat, logits = denoiser(torch.randn(2, 2), torch.tensor([1.0, 0.1]), tokens=tokens,
                              given=torch.zeros(2, 2), x_given=torch.zeros(2, 2))
    assert x0_hat.shape == (2, 2) and logits.shape == (2, 2, 6)
    assert torch.isinf(logits[:, 0, 3:]).all() and torch.isfinite(logits[:, 0, :3]).all()  # column 0 has 3 levels
    assert torch.isinf(logits[:, 1, 5]).all() and torch.isfinite(logits[:, 1, :5]).all()  # never predicts the mask


def test_mask_time_turns_edm_noise_levels_into_uniform_times():
    process = JointProcess()
    sigma = LogNormalSigma(process.p_mean, process.p_std)(20000, generator=torch.Generator().manual_seed(0))
    t = process.mask_time(sigma)
    assert abs(t.mean().item() - 0.5) < 0.01 and abs(t.var().item() - 1 / 12) < 0.003  # U(0, 1): mean 1/2, var 1/12
    ends = process.mask_time(torch.tensor([80.0, 0.0]))
    assert ends[0] > 0.9999 and ends[1] == 0
    assert torch.all(torch.diff(process.mask_time(torch.logspace(-3, 2, 50))) > 0)


def test_joint_loss_is_per_row_and_given_columns_cost_nothing():
    denoiser = tiny_denoiser()
    batch = (torch.randn(8, 2), torch.randint(0, 3, (8, 2)), torch.ones(8, 2))
    generator = torch.Generator().manual_seed(0)
    losses = joint_loss(denoiser, batch, generator, process=JointProcess(), mask_id=5)
    assert losses.shape == (8,) and torch.isfinite(losses).all() and (losses > 0).all()
    losses.mean().backward()
    assert all(p.grad is not None for p in denoiser.parameters() if p.requires_grad)
    everything_given = joint_loss(denoiser, batch, generator, process=JointProcess(), mask_id=5,
                                  condition_rate=1.0, always_given=torch.ones(4, dtype=torch.bool))
    assert torch.equal(everything_given, torch.zeros(8))
    missing = (batch[0], batch[1], torch.zeros(8, 2))  # numeric values all missing: only tokens are scored
    numeric_free = joint_loss(denoiser, missing, torch.Generator().manual_seed(1), process=JointProcess(), mask_id=5,
                              condition_rate=1.0, always_given=torch.tensor([False, False, True, True]))
    assert torch.equal(numeric_free, torch.zeros(8))


def test_unmask_step_reveals_the_right_share_and_keeps_revealed_tokens():
    logits = torch.zeros(4000, 2, 4)
    logits[..., 3] = -math.inf  # mask id 3 never drawn
    tokens = torch.full((4000, 2), 3)
    tokens[:, 0] = 1
    stepped = unmask_step(logits, tokens, t=0.8, s=0.4, schedule="linear", mask_id=3,
                          generator=torch.Generator().manual_seed(0))
    assert torch.equal(stepped[:, 0], tokens[:, 0])
    revealed = stepped[:, 1] != 3
    assert abs(revealed.float().mean().item() - 0.5) < 0.03  # (alpha(s) - alpha(t)) / (1 - alpha(t)) = 0.4 / 0.8
    assert set(stepped[revealed, 1].tolist()) == {0, 1, 2}
    final = unmask_step(logits, stepped, t=0.4, s=0.0, schedule="linear", mask_id=3, generator=None)
    assert (final != 3).all()


def test_sampler_holds_given_values_and_reveals_every_token():
    denoiser = tiny_denoiser().eval()
    given_tokens = torch.tensor([2, 5])
    x_num, tokens = sample_rows(denoiser, 16, num_numeric=2, num_categorical=2, mask_id=5, process=JointProcess(),
                                steps=6, given_num=torch.tensor([True, False]), x_given=torch.tensor([0.7, 0.0]),
                                given_tokens=given_tokens, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x_num[:, 0], torch.tensor(0.7)) and x_num[:, 1].std() > 0
    assert (tokens[:, 0] == 2).all() and ((tokens[:, 1] >= 0) & (tokens[:, 1] < 5)).all()


# --- fit / sample / save / load ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    table = two_cluster_table()
    out_dir = tmp_path_factory.mktemp("model")
    model = fit(table, target="group", out_dir=out_dir, steps=400, batch_size=64, net=TINY_NET, lr=3e-3,
                progress=False)
    return table, model, out_dir


def test_samples_have_the_input_columns_dtypes_and_labels(fitted):
    table, model, _ = fitted
    rows = model.sample(300, seed=1)
    assert list(rows.columns) == list(table.columns)
    assert rows.dtypes.astype(str).tolist() == table.dtypes.astype(str).tolist()
    assert set(rows["group"]) <= {"left", "right"} and set(rows["size"]) <= {"small", "medium", "large"}
    assert rows["count"].between(table["count"].min(), table["count"].max()).all()
    assert 0.05 < rows["note"].isna().mean() < 0.4  # missingness is modelled (20% in the data)
    # The joint structure is learned: x's sign follows the group.
    agreement = ((rows["x"] > 0) == (rows["group"] == "right")).mean()
    assert agreement > 0.8


def test_conditional_sampling_fixes_values_and_moves_the_rest(fitted):
    _, model, _ = fitted
    left = model.sample(200, where={"group": "left"}, seed=2)
    right = model.sample(200, where="group=right", seed=2)
    assert (left["group"] == "left").all() and (right["group"] == "right").all()
    assert left["x"].mean() < -1 and right["x"].mean() > 1
    assert (left["size"] == "small").mean() > 0.6 and (right["size"] == "large").mean() > 0.6
    numeric = model.sample(50, where=["x=2.5", "flag=True"], seed=3)
    assert (numeric["x"] == 2.5).all() and numeric["flag"].all()


def test_where_errors_name_the_column_or_value(fitted):
    _, model, _ = fitted
    with pytest.raises(ValueError, match="unknown column 'grup'"):
        model.sample(5, where={"grup": "left"})
    with pytest.raises(ValueError, match="column 'group' has no value 'middle'"):
        model.sample(5, where={"group": "middle"})
    with pytest.raises(ValueError, match="must look like column=value"):
        model.sample(5, where="group")
    with pytest.raises(ValueError, match="positive integer"):
        model.sample(0)


def test_saved_model_reloads_and_samples_identically(fitted, tmp_path):
    _, model, out_dir = fitted
    assert (out_dir / "transforms.json").is_file() and (out_dir / "ema.safetensors").is_file()
    expected = model.sample(40, seed=5, batch_size=16)
    pd.testing.assert_frame_equal(TabularModel.load(out_dir).sample(40, seed=5, batch_size=16), expected)
    pd.testing.assert_frame_equal(TabularModel.load(model.save(tmp_path / "copy")).sample(40, seed=5, batch_size=16),
                                  expected)
    with pytest.raises(FileNotFoundError, match="not a tabular model directory"):
        TabularModel.load(tmp_path)


# --- CLI ------------------------------------------------------------------------------------------------------------


def run_cli(*args: str) -> int:
    try:
        cli_main(list(map(str, args)))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def test_cli_fit_sample_evaluate(tmp_path, capsys):
    table = two_cluster_table(160, seed=4)
    table["row_id"] = [f"r{i}" for i in range(len(table))]
    table["empty"] = np.nan
    table.iloc[:120].to_csv(tmp_path / "train.csv", index=False)
    table.iloc[120:].to_csv(tmp_path / "holdout.csv", index=False)
    model_dir, synthetic = tmp_path / "model", tmp_path / "synthetic.csv"
    assert run_cli("tabular", "fit", tmp_path / "train.csv", "-o", model_dir, "--target", "group", "--steps", 30) == 0
    err = capsys.readouterr().err
    assert "warning: column 'row_id' looks like an identifier" in err and "'empty' is entirely missing" in err
    assert run_cli("tabular", "sample", model_dir, "-n", 50, "-o", synthetic, "--where", "group=left",
                   "--seed", 1) == 0
    rows = pd.read_csv(synthetic)
    assert list(rows.columns) == list(table.columns) and (rows["group"] == "left").all() and rows["empty"].isna().all()
    record = json.loads((tmp_path / "synthetic.csv.json").read_text())
    assert record["seed"] == 1 and record["rows"] == 50 and record["where"] == ["group=left"]
    assert run_cli("tabular", "fit", tmp_path / "train.csv", "-o", model_dir, "--target", "group", "--steps", 40,
                   "--resume") == 0  # continues the 30-step run from its final checkpoint
    assert "fitted 40 steps" in capsys.readouterr().out
    assert run_cli("tabular", "evaluate", tmp_path / "train.csv", synthetic, "--holdout", tmp_path / "holdout.csv",
                   "--target", "group", "--no-reference") == 0
    assert "Column shapes error" in capsys.readouterr().out
    assert (tmp_path / "synthetic_report.json").is_file() and (tmp_path / "synthetic_columns.png").is_file()
    assert run_cli("tabular", "sample", model_dir, "-n", 5, "-o", synthetic, "--where", "colour=red") == 2
    assert "unknown column 'colour'" in capsys.readouterr().err


def test_cli_reports_bad_files_in_one_line(tmp_path, capsys):
    (tmp_path / "header.csv").write_text("a,b\n")
    assert run_cli("tabular", "fit", tmp_path / "header.csv", "-o", tmp_path / "m") == 2
    err = capsys.readouterr().err
    assert "has a header (2 columns) but no data rows" in err and "Traceback" not in err


def test_train_and_load_through_the_public_api(tmp_path):
    import noisecraft

    two_cluster_table(64, seed=2).to_csv(tmp_path / "t.csv", index=False)
    result = noisecraft.train({"data": str(tmp_path / "t.csv"), "out_dir": str(tmp_path / "m"), "steps": 3,
                               "batch_size": 16}, modality="tabular", progress=False)
    assert result.step == 3
    model = noisecraft.load(tmp_path / "m")
    assert isinstance(model, TabularModel) and len(model.sample(7, seed=0)) == 7
    with pytest.raises(ValueError, match="needs 'out_dir'"):
        noisecraft.train({"data": str(tmp_path / "t.csv")}, modality="tabular")


# --- sampling at scale: unpadded logits, grouped draws, shared noise embedding ------------------------------------------


def test_flat_logits_are_the_padded_ones_without_padding():
    net = tiny_denoiser(category_sizes=(3, 5, 3)).net.eval()
    inputs = dict(tokens=torch.tensor([[0, 5, 5], [5, 4, 1]]), given=torch.zeros(2, 2), x_given=torch.zeros(2, 2))
    x, c_noise = torch.randn(2, 2), torch.tensor([0.3, -0.2])
    F_padded, padded = net(x, c_noise, **inputs)
    F_flat, flat = net(x, c_noise, logits="flat", **inputs)
    F_none, none = net(x, c_noise, logits=None, **inputs)
    assert none is None and torch.equal(F_padded, F_flat) and torch.equal(F_padded, F_none)
    assert flat.shape == (2, 3 + 5 + 3)
    for column, (start, size) in enumerate(zip(net.flat_offsets, net.category_sizes)):
        assert torch.equal(flat[:, start:start + size], padded[:, column, :size])
    assert net.column_groups() == [(3, [0, 2]), (5, [1])]


def test_shared_noise_embedding_is_the_same_function():
    net = tiny_denoiser().net
    inputs = dict(tokens=torch.tensor([[0, 5]] * 4), given=torch.zeros(4, 2), x_given=torch.zeros(4, 2))
    x, c_noise = torch.randn(4, 2), torch.full((4,), 0.25)
    per_row = net.train()(x, c_noise, **inputs)  # dropout is 0: train mode only turns the sharing off
    shared = net.eval()(x, c_noise, **inputs)
    assert torch.allclose(per_row[0], shared[0], atol=1e-5) and torch.allclose(per_row[1], shared[1], atol=1e-5)


def test_padded_ids_are_never_drawn_and_tokens_follow_the_logits():
    """Columns of sizes 2, 7 and 2 (mask id 7): with a constant head (bias b, weights 0) every revealed token is a
    draw from softmax(b) over its own column's ids -- never a padded id -- at the right frequencies."""
    sizes = (2, 7, 2)
    torch.manual_seed(0)
    denoiser = TabularDenoiser(TabularNet(1, list(sizes), **TINY_NET)).eval()
    head = denoiser.net.category_head
    bias = torch.tensor([2.0, -2.0, 0.5, -1.0, 0.0, 1.0, -3.0, 3.0, -0.5, 4.0, -4.0])
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(bias)
    rows = 4000
    _, tokens = sample_rows(denoiser, rows, num_numeric=1, num_categorical=3, mask_id=7, process=JointProcess(),
                            steps=5, generator=torch.Generator().manual_seed(0))
    offsets = [0, 2, 9]
    for column, size in enumerate(sizes):
        drawn = tokens[:, column]
        assert ((drawn >= 0) & (drawn < size)).all()  # never the mask id, never a padded id
        expected = bias[offsets[column]:offsets[column] + size].softmax(0)
        counts = torch.bincount(drawn, minlength=size).double()
        stderr = (expected * (1 - expected) / rows).sqrt()
        assert ((counts / rows - expected).abs() < 5 * stderr + 1e-12).all(), (column, counts / rows, expected)


def test_sampling_is_deterministic_for_a_seed(fitted):
    _, model, _ = fitted
    first = model.sample(300, seed=7, batch_size=128)
    again = model.sample(300, seed=7, batch_size=128)
    pd.testing.assert_frame_equal(first, again)
    other = model.sample(300, seed=8, batch_size=128)
    assert not first.equals(other)
    denoiser = tiny_denoiser().eval()
    runs = [sample_rows(denoiser, 64, num_numeric=2, num_categorical=2, mask_id=5, process=JointProcess(), steps=4,
                        generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_a_denoiser_without_the_flat_layout_still_samples_from_padded_logits():
    inner = tiny_denoiser().eval()

    class PaddedOnly(torch.nn.Module):  # no .net with column groups: sample_rows falls back to the padded draw
        def forward(self, x, sigma, **cond):
            return inner(x, sigma, **cond)

    _, tokens = sample_rows(PaddedOnly(), 200, num_numeric=2, num_categorical=2, mask_id=5, process=JointProcess(),
                            steps=4, generator=torch.Generator().manual_seed(0))
    assert ((tokens[:, 0] >= 0) & (tokens[:, 0] < 3)).all() and ((tokens[:, 1] >= 0) & (tokens[:, 1] < 5)).all()
