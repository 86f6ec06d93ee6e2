"""noisecraft/sequence/model.py: the spec, the model wrapper and the training loss_fn."""

import json

import pytest
import torch
from torch import nn

from noisecraft.sequence import SequenceDiffusionModel, SequenceModelSpec, make_loss_fn, make_sequence_spec

V, L = 9, 10

def assert_close(a, b, atol=1e-6):
    """|a - b| <= atol everywhere (torch.testing.assert_close costs a 2 s import on its first call)."""
    assert a.shape == b.shape and float((a - b).detach().abs().max()) <= atol, float((a - b).detach().abs().max())



def spec_for(**fields) -> SequenceModelSpec:
    net = fields.pop("net", {})
    return make_sequence_spec("text", vocab_size=V, max_length=L, net=net, **fields)


def batch(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"tokens": torch.randint(0, V, (b, L), generator=g)}


def test_spec_round_trip_and_defaults():
    spec = spec_for(pad_id=0, eos_id=1, extra={"tokenizer": "tok.json"}, net={"num_classes": 2, "cond_dim": 3})
    assert spec.mask_id == V and spec.net["vocab_size"] == V and spec.num_classes == 2 and spec.cond_dim == 3
    again = SequenceModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())), kind="text")
    assert again == spec
    with pytest.raises(ValueError, match="not a 'molecules' model"):
        SequenceModelSpec.from_dict(spec.to_dict(), kind="molecules")
    with pytest.raises(ValueError, match=r"unknown sequence model keys \['vocab'\]"):
        SequenceModelSpec.from_dict({**spec.to_dict(), "vocab": 3})


@pytest.mark.parametrize("fields, message", [
    (dict(mask_id=0), "mask_id must be vocab_size"),
    (dict(eos_id=V), "eos_id must be a token id"),
    (dict(mask_schedule="quadratic"), "unknown mask_schedule"),
    (dict(cond_drop_prob=1.5), "cond_drop_prob"),
])
def test_spec_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        spec_for(**fields)
    with pytest.raises(ValueError, match="disagrees with vocab_size"):
        SequenceModelSpec(kind="text", net={"vocab_size": V + 1}, vocab_size=V, max_length=L)


def test_loss_fn_returns_finite_per_example_nelbo_and_backprops():
    spec = spec_for(net={"num_classes": 2, "cond_dim": 3})
    model = SequenceDiffusionModel(spec)
    data = batch() | {"class_labels": torch.tensor([0, 1, 1, 0]), "cond": torch.randn(4, 3)}
    loss = make_loss_fn(spec)(model, data, torch.Generator().manual_seed(1))
    assert loss.shape == (4,) and torch.isfinite(loss).all() and (loss >= 0).all()
    loss.mean().backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is None or torch.isfinite(g).all() for g in grads.values())
    assert grads["net.head.weight"].abs().sum() > 0
    # a fresh model predicts uniformly: every scored token costs log V exactly, weighted by the NELBO weight
    assert torch.equal(model(data["tokens"], torch.rand(4)), torch.zeros(4, L, V))


class Spy(nn.Module):
    """Records the keyword conditions of every call; uniform logits."""

    time_independent = True

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, **cond):
        self.calls.append(cond)
        return torch.zeros(*x.shape, V)


def test_condition_dropout_replaces_conditions_by_their_null_values():
    data = batch() | {"class_labels": torch.tensor([0, 1, 1, 0]), "cond": torch.randn(4, 3)}
    for prob, dropped in [(1.0, True), (0.0, False)]:
        spec = spec_for(net={"num_classes": 2, "cond_dim": 3}, cond_drop_prob=prob)
        spy = Spy()
        make_loss_fn(spec)(SequenceDiffusionModel(spec, net=spy), data, torch.Generator().manual_seed(2))
        (cond,) = spy.calls
        assert set(cond) == {"class_labels", "cond", "cond_mask"}
        if dropped:
            assert (cond["class_labels"] == 2).all() and not cond["cond_mask"].any()
        else:
            assert torch.equal(cond["class_labels"], data["class_labels"]) and cond["cond_mask"].all()
    # with probability 1/2 the same examples lose both conditions together
    spec = spec_for(net={"num_classes": 2, "cond_dim": 3}, cond_drop_prob=0.5)
    spy = Spy()
    many = {"tokens": torch.zeros(256, L, dtype=torch.long), "class_labels": torch.zeros(256, dtype=torch.long),
            "cond": torch.randn(256, 3)}
    make_loss_fn(spec)(SequenceDiffusionModel(spec, net=spy), many, torch.Generator().manual_seed(3))
    (cond,) = spy.calls
    assert torch.equal(cond["class_labels"] == 2, ~cond["cond_mask"]) and 80 < (~cond["cond_mask"]).sum() < 176


def test_padding_costs_nothing_without_loss_on_padding():
    spec = spec_for(net={"time_conditioning": "none"})
    model = SequenceDiffusionModel(spec)
    with torch.no_grad():  # a non-trivial network (the init is uniform)
        for i, p in enumerate(model.parameters()):
            p.copy_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(i)))
    data = batch(b=6)
    padding_mask = torch.arange(L) < torch.tensor([10, 7, 5, 3, 8, 1])[:, None]
    other = data["tokens"].clone()
    other[~padding_mask] = (other[~padding_mask] + 3) % V

    def loss(tokens, loss_on_padding):
        fn = make_loss_fn(spec, loss_on_padding=loss_on_padding)
        return fn(model, {"tokens": tokens, "padding_mask": padding_mask}, torch.Generator().manual_seed(4))

    assert_close(loss(data["tokens"], False), loss(other, False))  # pads: neither scored nor seen
    assert not torch.allclose(loss(data["tokens"], True), loss(other, True))  # pads are data
    spy = Spy()
    make_loss_fn(spec, loss_on_padding=False)(SequenceDiffusionModel(spec, net=spy),
                                              {"tokens": data["tokens"], "padding_mask": padding_mask}, None)
    make_loss_fn(spec)(SequenceDiffusionModel(spec, net=spy), {"tokens": data["tokens"], "padding_mask": padding_mask},
                       None)
    assert torch.equal(spy.calls[0]["padding_mask"], padding_mask) and spy.calls[1] == {}
