"""The sequence transformer (noisecraft/nets/transformer.py): shapes, padding, RoPE, conditioning, registry."""

import json

import pytest
import torch

from noisecraft.nets import (SequenceTransformer, SequenceTransformerConfig, TRANSFORMER_PRESETS, build_network,
                             network_config, transformer_config)
from noisecraft.nets import transformer as transformer_module

V, L = 11, 12

def assert_close(a, b, atol=1e-6):
    """|a - b| <= atol everywhere (torch.testing.assert_close costs a 2 s import on its first call)."""
    assert a.shape == b.shape and float((a - b).detach().abs().max()) <= atol, float((a - b).detach().abs().max())



def make_net(seed=0, **overrides) -> SequenceTransformer:
    """A tiny transformer with every parameter redrawn (the real init zeroes the head and the adaLN gates, which
    would make every output 0 and every test below pass trivially)."""
    config = transformer_config("tiny", vocab_size=V, max_length=16, **overrides)
    net = SequenceTransformer(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return net


def tokens(batch=3, length=L, seed=1):
    return torch.randint(0, V + 1, (batch, length), generator=torch.Generator().manual_seed(seed))  # masks too


def test_output_shape_and_uniform_logits_at_init():
    net = SequenceTransformer(transformer_config("tiny", vocab_size=V, max_length=16, num_classes=2, cond_dim=3))
    x = tokens()
    logits = net(x, torch.rand(3))
    assert logits.shape == (3, L, V) and logits.dtype == torch.float32
    assert torch.equal(logits, torch.zeros_like(logits))  # zero-init head: uniform p(x0 | x_t) at the start
    assert net.token_embedding.num_embeddings == V + 1 and net.config.mask_id == V
    assert make_net()(x, torch.rand(3)).abs().max() > 0.1


def test_padding_tokens_do_not_influence_real_positions():
    net = make_net()
    x = tokens()
    padding_mask = torch.ones(3, L, dtype=torch.bool)
    padding_mask[0, 7:] = False
    padding_mask[2, 3:] = False
    other = x.clone()
    other[~padding_mask] = (x[~padding_mask] + 5) % (V + 1)  # different pad tokens (mask included)
    t = torch.rand(3)
    a, b = net(x, t, padding_mask=padding_mask), net(other, t, padding_mask=padding_mask)
    assert_close(a[padding_mask], b[padding_mask])
    assert (a[~padding_mask] - b[~padding_mask]).abs().max() > 1e-3  # the change was visible at the pads
    unmasked = net(other, t)  # without the padding mask the pads are attended to
    assert (unmasked[padding_mask] - a[padding_mask]).abs().max() > 1e-3
    # an all-padding row produces finite logits (it attends everywhere instead of to nothing)
    assert torch.isfinite(net(x, t, padding_mask=torch.zeros(3, L, dtype=torch.bool))).all()


def test_rope_makes_the_network_position_aware(monkeypatch):
    net = make_net(time_conditioning="none")
    x, t = tokens(batch=2), torch.zeros(2)
    perm = torch.randperm(L, generator=torch.Generator().manual_seed(3))

    def equivariance_gap():
        return (net(x[:, perm], t) - net(x, t)[:, perm]).abs().max().item()

    assert equivariance_gap() > 1e-2  # positions matter
    # control: without the rotation, attention is permutation-equivariant, so the same check passes exactly
    monkeypatch.setattr(transformer_module, "apply_rotary", lambda x, cos, sin: x)
    assert equivariance_gap() < 1e-5


def test_rope_scores_depend_on_relative_position_only():
    cos, sin = transformer_module.rotary_tables(8, 4)
    q, k = torch.randn(1, 1, 1, 4).expand(1, 1, 8, 4), torch.randn(1, 1, 1, 4).expand(1, 1, 8, 4)
    scores = transformer_module.apply_rotary(q, cos, sin)[0, 0] @ transformer_module.apply_rotary(k, cos, sin)[0, 0].T
    for offset in range(-3, 4):  # constant along each diagonal: q_m . k_n is a function of m - n
        diagonal = scores.diagonal(offset)
        assert_close(diagonal, diagonal[:1].expand_as(diagonal), atol=1e-5)


def test_time_conditioning_none_ignores_t_and_adaln_uses_it():
    x = tokens()
    none, adaln = make_net(time_conditioning="none"), make_net(time_conditioning="adaln")
    assert none.time_independent and not adaln.time_independent
    assert torch.equal(none(x, torch.full((3,), 0.1)), none(x, torch.full((3,), 0.9)))
    assert (adaln(x, torch.full((3,), 0.1)) - adaln(x, torch.full((3,), 0.9))).abs().max() > 1e-2
    assert_close(adaln(x, torch.tensor(0.5)), adaln(x, torch.full((3,), 0.5)))  # 0-d t broadcast


def test_null_condition_rows():
    net = make_net(num_classes=3, cond_dim=2, time_conditioning="none")
    x, t = tokens(), torch.zeros(3)
    labels = torch.tensor([0, 1, 2])
    assert_close(net(x, t), net(x, t, class_labels=torch.full((3,), 3)))  # None = "no label" row 3
    assert (net(x, t, class_labels=labels) - net(x, t)).abs().max() > 1e-2
    cond = torch.randn(3, 2)
    off = torch.zeros(3, dtype=torch.bool)
    nan_cond = torch.full((3, 2), float("nan"))
    null = net(x, t)
    assert_close(net(x, t, cond=cond, cond_mask=off), null)  # the learned "no condition" vector
    assert_close(net(x, t, cond=nan_cond, cond_mask=off), null)  # dropped values never enter
    assert (net(x, t, cond=cond) - null).abs().max() > 1e-2
    partly = torch.tensor([True, False, True])
    mixed = net(x, t, cond=cond, cond_mask=partly)
    assert_close(mixed[1], null[1])
    assert_close(mixed[0], net(x, t, cond=cond)[0])
    # gradients stay finite with NaN in the dropped rows (missing properties of a molecule)
    net.train()
    cond_nan = cond.clone()
    cond_nan[1] = float("nan")
    net(x, t, cond=cond_nan, cond_mask=partly).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_build_by_name_and_config_round_trip():
    config = network_config("sequence_transformer", "tiny", vocab_size=V, max_length=16, num_classes=2)
    config = json.loads(json.dumps(config))
    net = build_network("sequence_transformer", config)
    assert isinstance(net, SequenceTransformer) and net.config == SequenceTransformerConfig.from_dict(config)
    assert (net.config.dim, net.config.depth, net.config.heads) == (64, 2, 4)
    for preset, (dim, depth, heads) in {"small": (256, 4, 4), "base": (768, 12, 12)}.items():
        c = transformer_config(preset, vocab_size=V)
        assert (c.dim, c.depth, c.heads) == (dim, depth, heads) and set(TRANSFORMER_PRESETS) >= {preset}
    assert net(tokens(), torch.rand(3)).shape == (3, L, V)


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="needs vocab_size"):
        network_config("sequence_transformer", "tiny")
    with pytest.raises(ValueError, match="unknown preset"):
        network_config("sequence_transformer", "huge", vocab_size=V)
    with pytest.raises(ValueError, match=r"unknown SequenceTransformerConfig keys \['width'\]"):
        build_network("sequence_transformer", {"vocab_size": V, "width": 3})
    with pytest.raises(ValueError, match="not divisible by heads"):
        transformer_config("tiny", vocab_size=V, dim=60, heads=8)
    with pytest.raises(ValueError, match="must be even"):
        transformer_config("tiny", vocab_size=V, dim=12, heads=4)
    with pytest.raises(ValueError, match="time_conditioning"):
        transformer_config("tiny", vocab_size=V, time_conditioning="film")
    net = make_net()
    with pytest.raises(ValueError, match="exceeds max_length"):
        net(tokens(length=17), torch.rand(3))
    with pytest.raises(ValueError, match="no classes"):
        net(tokens(), torch.rand(3), class_labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="t must have shape"):
        net(tokens(), torch.rand(2))
    with pytest.raises(ValueError, match="padding_mask"):
        net(tokens(), torch.rand(3), padding_mask=torch.ones(3, L))
