"""generate_tokens against exact answers: SequenceDiffusionModel around EXACT denoisers of known distributions
(i.i.d. tokens, a class-conditional i.i.d. law, an explicit joint over all sequences of length 3)."""

import itertools

import pytest
import torch
from scipy.stats import chisquare
from torch import nn

from noisecraft.diffusion.masked import sample_masked
from noisecraft.sequence import SequenceDiffusionModel, SequenceModelSpec, generate_tokens, truncate_at_eos
from noisecraft.sequence.model import make_sequence_spec

V = 3
MASK = V
P_IID = torch.tensor([0.45, 0.3, 0.15, 0.1], dtype=torch.float64)  # 4 tokens, distinct probabilities


class IIDNet(nn.Module):
    """Exact SUBS denoiser of i.i.d. tokens with probabilities p[c] (per class c; row C = the mixture, "no label"):
    the posterior at every masked position is p itself, whatever x_t and t."""

    time_independent = True

    def __init__(self, probs: torch.Tensor):
        super().__init__()
        self.log_probs = probs.log().float()
        self.calls = []

    def forward(self, x, t, class_labels=None):
        self.calls.append(x.shape[0])
        rows = self.log_probs[class_labels] if class_labels is not None else self.log_probs[-1].expand(x.shape[0], -1)
        return rows[:, None, :].expand(*x.shape, -1)


class JointNet(nn.Module):
    """Exact posterior p(x0^l | observed tokens of x_t) of an explicit joint over {0..V-1}^L, tabulated over every
    partially masked state by enumeration (brute force); independent of t (absorbing process)."""

    time_independent = True

    def __init__(self, joint: torch.Tensor):
        super().__init__()
        length = joint.ndim
        all_x = configs(length)
        states = torch.tensor(list(itertools.product(range(V + 1), repeat=length)))
        consistent = ((all_x[None] == states[:, None]) | (states[:, None] == MASK)).all(-1)
        one_hot = torch.nn.functional.one_hot(all_x, V).double().reshape(len(all_x), length * V)
        posterior = ((consistent * joint.reshape(-1)) @ one_hot).reshape(len(states), length, V)
        self.table = (posterior / posterior.sum(-1, keepdim=True)).log().float()
        self.place = (V + 1) ** torch.arange(length - 1, -1, -1)
        self.calls = 0

    def forward(self, x, t):
        self.calls += 1
        return self.table[(x * self.place).sum(-1)]


def configs(length):
    return torch.tensor(list(itertools.product(range(V), repeat=length)))


def random_joint(length=3, seed=0):
    p = torch.rand([V] * length, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) ** 3
    return p / p.sum()


def entropy(p: torch.Tensor) -> float:
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def exact_model(net, vocab_size, length, schedule="linear", num_classes=0) -> SequenceDiffusionModel:
    spec = SequenceModelSpec(kind="test", net={"num_classes": num_classes}, vocab_size=vocab_size, max_length=length,
                             mask_schedule=schedule)
    return SequenceDiffusionModel(spec, net=net)


def joint_counts(x):
    return torch.bincount((x * V ** torch.arange(x.shape[1] - 1, -1, -1)).sum(1), minlength=V ** x.shape[1]).double()


def assert_frequencies(counts: torch.Tensor, probs: torch.Tensor):
    """Chi-square goodness of fit, and no count where the probability is 0."""
    counts, probs = counts.double(), probs.double()
    expected = probs / probs.sum() * counts.sum()
    assert chisquare(counts[expected > 0], expected[expected > 0]).pvalue > 1e-3, (counts, expected)
    assert counts[expected == 0].sum() == 0


def token_counts(x, vocab):
    return torch.bincount(x.reshape(-1), minlength=vocab)


# --- the sampler recovers the distribution ---


@pytest.mark.parametrize("schedule, steps", [("loglinear", 3), ("cosine", 1)])
def test_iid_tokens_follow_p(schedule, steps):
    model = exact_model(IIDNet(P_IID[None]), 4, 6, schedule)
    x = generate_tokens(model, 3000, 6, steps=steps, seed=0)
    assert x.shape == (3000, 6) and x.dtype == torch.long
    assert_frequencies(token_counts(x, 4), P_IID)
    for position in (0, 5):
        assert_frequencies(token_counts(x[:, position], 4), P_IID)


def test_joint_recovered_one_token_per_step():
    """Random order, one token per step, exact posterior = any-order autoregressive sampling: exact for the joint,
    so every pair (and triple) frequency matches."""
    joint = random_joint(seed=1)
    x = generate_tokens(exact_model(JointNet(joint), V, 3), 20000, 3, steps=3, seed=2, strategy="random")
    assert_frequencies(joint_counts(x), joint.reshape(-1))
    assert_frequencies(joint_counts(x[:, :2]), joint.sum(2).reshape(-1))  # a pair's frequencies


def test_prefix_is_kept_and_the_rest_is_the_conditional():
    joint = random_joint(seed=3)
    x = generate_tokens(exact_model(JointNet(joint), V, 3), 20000, 3, steps=2, seed=4, strategy="random",
                        prefix=torch.tensor([2]))
    assert (x[:, 0] == 2).all()
    assert_frequencies(joint_counts(x[:, 1:]), joint[2].reshape(-1))


def test_template_infill_is_kept_and_the_rest_is_the_conditional():
    joint = random_joint(seed=5)
    template = torch.tensor([MASK, 1, MASK])
    x = generate_tokens(exact_model(JointNet(joint), V, 3), 20000, 3, steps=2, seed=6, strategy="random",
                        template=template)
    assert (x[:, 1] == 1).all()
    assert_frequencies(joint_counts(x[:, [0, 2]]), joint[:, 1, :].reshape(-1))
    both = generate_tokens(exact_model(JointNet(joint), V, 3), 50, 3, steps=2, seed=6, prefix=torch.tensor([0]),
                           template=template)
    assert (both[:, :2] == torch.tensor([0, 1])).all()
    with pytest.raises(ValueError, match="disagree"):
        generate_tokens(exact_model(JointNet(joint), V, 3), 2, 3, steps=2, seed=6, prefix=torch.tensor([0, 2]),
                        template=template)


def test_same_seed_same_tokens():
    model = exact_model(JointNet(random_joint(seed=7)), V, 3, "loglinear")
    a, b = (generate_tokens(model, 64, 3, steps=5, seed=8) for _ in range(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, generate_tokens(model, 64, 3, steps=5, seed=9))


# --- caching ---


def test_cache_changes_no_bit_and_saves_calls_for_a_t_independent_model():
    net = JointNet(random_joint(seed=10))
    model = exact_model(net, V, 3, "loglinear")

    def run(cache):
        net.calls = 0
        return generate_tokens(model, 4, 3, steps=64, seed=11, cache=cache), net.calls

    (plain, plain_calls), (cached, cached_calls) = run(False), run(True)
    assert torch.equal(plain, cached)
    assert cached_calls <= 12 < plain_calls  # at most one call per revealed token; 64 steps (until all revealed)


def test_cache_is_not_used_for_a_t_dependent_network():
    spec = make_sequence_spec("test", vocab_size=5, max_length=4, net={"time_conditioning": "adaln"})
    model = SequenceDiffusionModel(spec).eval()
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.copy_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(i)))
    calls = []
    model.net.register_forward_hook(lambda *args: calls.append(1))
    plain = generate_tokens(model, 2, 4, steps=16, seed=0, cache=False)
    n_plain = len(calls)
    cached = generate_tokens(model, 2, 4, steps=16, seed=0, cache=True)
    assert torch.equal(plain, cached) and len(calls) == 2 * n_plain
    assert n_plain > 8  # more calls than tokens: no step was skipped, the logits depend on t


# --- temperature, top-p ---


def test_top_p_one_and_temperature_one_are_plain_sampling():
    model = exact_model(JointNet(random_joint(seed=12)), V, 3, "loglinear")
    ours = generate_tokens(model, 500, 3, steps=4, seed=13, top_p=1.0, temperature=1.0)
    plain = sample_masked(model.logits, (500, 3), steps=4, schedule="loglinear", mask_id=MASK,
                          generator=torch.Generator().manual_seed(13))
    assert torch.equal(ours, plain)


def nucleus(p: torch.Tensor, top_p: float, temperature: float) -> torch.Tensor:
    """Reference: the tempered distribution restricted to its top-p nucleus, written out by hand."""
    q = p ** (1 / temperature)
    q = q / q.sum()
    keep, mass = torch.zeros_like(q, dtype=torch.bool), 0.0
    for i in q.argsort(descending=True).tolist():
        if mass >= top_p:
            break
        keep[i], mass = True, mass + float(q[i])
    return torch.where(keep, q, 0.0)


@pytest.mark.parametrize("top_p, temperature", [(0.7, 1.0), (0.7, 2.0), (0.95, 0.5)])
def test_top_p_draws_from_the_renormalised_nucleus(top_p, temperature):
    expected = nucleus(P_IID, top_p, temperature)
    assert (expected == 0).any()  # the filter does cut something
    x = generate_tokens(exact_model(IIDNet(P_IID[None]), 4, 5), 4000, 5, steps=2, seed=14, top_p=top_p,
                        temperature=temperature)
    assert_frequencies(token_counts(x, 4), expected)


def test_tiny_top_p_is_the_argmax():
    model = exact_model(JointNet(random_joint(seed=15)), V, 3, "loglinear")
    # one step reveals every token from its marginal (argmax draws no uniforms, so with more steps the two runs'
    # reveal orders would differ)
    tiny = generate_tokens(model, 200, 3, steps=1, seed=16, top_p=1e-6)
    argmax = generate_tokens(model, 200, 3, steps=1, seed=16, temperature=0.0)
    assert torch.equal(tiny, argmax) and (argmax == argmax[0]).all()
    iid = generate_tokens(exact_model(IIDNet(P_IID[None]), 4, 5), 100, 5, steps=2, seed=17, top_p=0.01)
    assert (iid == 0).all()


# --- classifier-free guidance ---


@pytest.mark.parametrize("guidance", [0.0, 1.0, 2.5])
def test_guidance_samples_p_u_to_the_1_minus_w_times_p_c_to_the_w(guidance):
    p0 = torch.tensor([0.6, 0.2, 0.1, 0.1], dtype=torch.float64)
    p1 = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    mixture = (p0 + p1) / 2
    net = IIDNet(torch.stack([p0, p1, mixture]))
    model = exact_model(net, 4, 5, num_classes=2)
    x = generate_tokens(model, 4000, 5, steps=2, seed=18, guidance=guidance, cond={"class_labels": torch.tensor(0)})
    assert_frequencies(token_counts(x, 4), mixture ** (1 - guidance) * p0 ** guidance)
    assert set(net.calls) == {8000 if guidance not in (0.0, 1.0) else 4000}  # one batched call per step


def test_guidance_needs_a_condition_and_uses_the_null_inputs():
    model = exact_model(IIDNet(P_IID[None]), 4, 5)
    with pytest.raises(ValueError, match="needs a condition"):
        generate_tokens(model, 2, 5, steps=2, seed=0, guidance=2.0)
    seen = []

    class Spy(nn.Module):
        def forward(self, x, t, **cond):
            seen.append(cond)
            return torch.zeros(*x.shape, 4)

    spec = SequenceModelSpec(kind="test", net={"num_classes": 3, "cond_dim": 2}, vocab_size=4, max_length=5)
    generate_tokens(SequenceDiffusionModel(spec, net=Spy()), 2, 5, steps=1, seed=0, guidance=3.0,
                    cond={"class_labels": torch.tensor([1, 2]), "cond": torch.ones(1, 2)})
    (cond,) = seen
    assert cond["class_labels"].tolist() == [1, 2, 3, 3]  # conditional half, then "no label"
    assert cond["cond_mask"].tolist() == [True, True, False, False] and cond["cond"].shape == (4, 2)


# --- progress, eos, errors ---


def test_progress_reports_every_step_and_its_exceptions_propagate():
    model = exact_model(IIDNet(P_IID[None]), 4, 5)
    seen = []
    generate_tokens(model, 2, 5, steps=6, seed=0, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (6, 6) and [d for d, _ in seen] == sorted(set(d for d, _ in seen)) and len(seen) >= 1

    class Stop(Exception):
        pass

    def cancel(done, total):
        if done == 2:
            raise Stop

    with pytest.raises(Stop):
        generate_tokens(model, 2, 5, steps=6, seed=0, progress=cancel)


def test_truncate_at_eos():
    x = torch.tensor([[5, 2, 7, 2, 1], [3, 3, 3, 3, 3]])
    assert truncate_at_eos(x, 2) == [[5], [3, 3, 3, 3, 3]]
    assert truncate_at_eos(x, 2, keep_eos=True) == [[5, 2], [3, 3, 3, 3, 3]]
    assert truncate_at_eos(x[0], 7) == [5, 2]
    assert truncate_at_eos(x, None) == x.tolist()


def test_input_errors():
    model = exact_model(IIDNet(P_IID[None]), 4, 5)
    with pytest.raises(ValueError, match="exceeds the model's max_length"):
        generate_tokens(model, 2, 6, steps=2, seed=0)
    with pytest.raises(ValueError, match="top_p"):
        generate_tokens(model, 2, 5, steps=2, seed=0, top_p=0.0)
    with pytest.raises(ValueError, match="prefix holds token ids"):
        generate_tokens(model, 2, 5, steps=2, seed=0, prefix=torch.tensor([4]))
    with pytest.raises(ValueError, match="batch size 3"):
        generate_tokens(model, 2, 5, steps=2, seed=0, cond={"class_labels": torch.zeros(3, dtype=torch.long)})
