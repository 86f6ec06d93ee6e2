"""Masked diffusion against exact answers: a logits_fn returning the TRUE posterior of a small enumerable joint."""

import itertools
import math

import pytest
import torch
from scipy.stats import chisquare

from noisecraft.diffusion.masked import (
    MaskSchedule,
    mask_tokens,
    masked_diffusion_loss,
    sample_masked,
    sample_t,
    unmask_step,
)

V = 3
MASK = V


def random_joint(L: int, seed: int = 0) -> torch.Tensor:
    """A strongly dependent joint over {0, 1, 2}^L (float64, sums to 1)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand([V] * L, generator=g, dtype=torch.float64) ** 3
    return p / p.sum()


def independent_joint(marginals: torch.Tensor) -> torch.Tensor:
    joint = marginals[0]
    for m in marginals[1:]:
        joint = joint[..., None] * m
    return joint


def configs(L: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(V), repeat=L)))


def posterior_fn(joint: torch.Tensor):
    """logits_fn(xt, t) = log p(x0^l | observed tokens of xt) at every position l, tabulated over all (V+1)^L
    partially masked states by enumeration (unmasked positions get a one-hot posterior)."""
    L = joint.ndim
    all_x = configs(L)  # [K, L], same order as joint.reshape(-1)
    states = torch.tensor(list(itertools.product(range(V + 1), repeat=L)))  # every xt, MASK included
    consistent = ((all_x[None] == states[:, None]) | (states[:, None] == MASK)).all(-1)  # [S, K]
    one_hot = torch.nn.functional.one_hot(all_x, V).double().reshape(len(all_x), L * V)
    posterior = ((consistent * joint.reshape(-1)) @ one_hot).reshape(len(states), L, V)
    table = (posterior / posterior.sum(-1, keepdim=True)).log().float()
    place = (V + 1) ** torch.arange(L - 1, -1, -1)

    def logits_fn(xt, t):
        assert t.shape == (xt.shape[0],)
        return table[(xt * place).sum(-1)]

    return logits_fn


def sample_joint(joint: torch.Tensor, n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return configs(joint.ndim)[torch.multinomial(joint.reshape(-1), n, replacement=True, generator=g)]


def entropy(joint: torch.Tensor) -> float:
    p = joint[joint > 0]
    return float(-(p * p.log()).sum())


def marginal(joint: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """p(x_dims), summing out the other dims but keeping them as size 1 (torch sums everything for dim=[])."""
    summed = [d for d in range(joint.ndim) if d not in dims]
    return joint.sum(dim=summed, keepdim=True) if summed else joint


def nelbo_integrand(joint: torch.Tensor, schedule: MaskSchedule, t: torch.Tensor) -> torch.Tensor:
    """w(t) * sum_M alpha^(L-|M|) (1-alpha)^|M| C(M), with C(M) = sum_{l in M} H(X_l | X_{not M}): E[loss | t]."""
    L = joint.ndim
    p = joint.reshape(-1)
    alpha = schedule.alpha(t)
    total = torch.zeros_like(t)
    for masked in itertools.product([False, True], repeat=L):
        kept = [d for d in range(L) if not masked[d]]
        cost = 0.0
        for l in (d for d in range(L) if masked[d]):
            # H(X_l | X_kept) = -sum_x p(x) log [p(x_l, x_kept) / p(x_kept)]
            conditional = marginal(joint, kept + [l]) / marginal(joint, kept)
            cost += float(-(p * conditional.expand_as(joint).reshape(-1).log()).sum())
        k = sum(masked)
        total += alpha ** (L - k) * (1 - alpha) ** k * cost
    return schedule.loss_weight(t) * total


def exact_nelbo(joint: torch.Tensor, schedule: MaskSchedule, t_min: float) -> float:
    """E_{t ~ U[t_min, 1]} of the integrand, by the trapezoid rule on a fine grid."""
    t = torch.linspace(t_min, 1, 20001, dtype=torch.float64)
    return float(torch.trapezoid(nelbo_integrand(joint, schedule, t), t) / (1 - t_min))


@pytest.mark.parametrize("name", ["linear", "cosine", "loglinear"])
def test_schedule_alpha_endpoints_and_derivative(name):
    schedule = MaskSchedule(name)
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64, requires_grad=True)
    alpha = schedule.alpha(t)
    (grad,) = torch.autograd.grad(alpha.sum(), t)
    torch.testing.assert_close(schedule.alpha_prime(t.detach()), grad)
    assert (grad < 0).all()
    assert float(schedule.alpha(torch.tensor(0.0))) == 1.0
    assert float(schedule.alpha(torch.tensor(1.0))) == pytest.approx(1e-3 if name == "loglinear" else 0.0, abs=1e-7)


def test_schedule_rejects_unknown_name():
    with pytest.raises(ValueError, match="unknown mask schedule"):
        MaskSchedule("quadratic")


def test_mask_tokens_rate_and_keep_mask():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, V, (400, 50), generator=g)
    keep = torch.zeros_like(x0, dtype=torch.bool)
    keep[:, :5] = True
    xt = mask_tokens(x0, 0.3, "linear", MASK, g, keep_mask=keep)
    masked = xt == MASK
    assert not masked[:, :5].any()
    assert torch.equal(xt[~masked], x0[~masked])
    assert masked[:, 5:].float().mean().item() == pytest.approx(0.3, abs=0.01)


def test_token_validation():
    with pytest.raises(TypeError, match="integer tensor"):
        mask_tokens(torch.zeros(2, 3), 0.5, "linear", MASK)
    with pytest.raises(ValueError, match="other than mask_id"):
        mask_tokens(torch.full((2, 3), MASK), 0.5, "linear", MASK)


def test_sample_t_range_and_low_discrepancy():
    g = torch.Generator().manual_seed(0)
    t = sample_t(64, generator=g, t_min=0.1)
    assert t.min() >= 0.1 and t.max() <= 1
    strata = ((t - 0.1) / 0.9 * 64).floor().long()
    assert torch.equal(strata.sort().values, torch.arange(64))  # one t in each of the 64 strata


def test_loss_at_fixed_t_matches_enumeration():
    """With t fixed, E[loss] = w(t) sum_M P(M | t) C(M); checked for a dependent joint by Monte Carlo."""
    joint, schedule, t = random_joint(3), MaskSchedule("cosine"), 0.6
    x0 = sample_joint(joint, 40000)
    loss = masked_diffusion_loss(posterior_fn(joint), x0, schedule=schedule, mask_id=MASK, t=t,
                                 generator=torch.Generator().manual_seed(2))
    exact = float(nelbo_integrand(joint, schedule, torch.tensor(t, dtype=torch.float64)))
    assert loss.mean().item() == pytest.approx(exact, abs=4 * loss.std().item() / math.sqrt(len(loss)))


@pytest.mark.parametrize("name", ["linear", "cosine", "loglinear"])
def test_loss_with_true_posterior_is_the_exact_nelbo(name):
    joint, schedule = random_joint(3, seed=3), MaskSchedule(name)
    x0 = sample_joint(joint, 40000)
    loss = masked_diffusion_loss(posterior_fn(joint), x0, schedule=schedule, mask_id=MASK, t_min=1e-3,
                                 generator=torch.Generator().manual_seed(4))
    exact = exact_nelbo(joint, schedule, t_min=1e-3)
    assert loss.mean().item() == pytest.approx(exact, abs=4 * loss.std().item() / math.sqrt(len(loss)))
    # the bound holds when alpha(1) = 0; loglinear stops at alpha(1) = eps and omits at most eps * sum_l H(X_l)
    assert exact >= entropy(joint) - schedule.alpha(torch.tensor(1.0)).item() * joint.ndim * math.log(V)


def test_linear_nelbo_is_tight_at_the_true_posterior():
    """Over t in [0, 1] the NELBO of the true posterior equals H(X) (every order's chain rule sums to H(X))."""
    joint = random_joint(3, seed=5)
    assert exact_nelbo(joint, MaskSchedule("linear"), t_min=1e-6) == pytest.approx(entropy(joint), rel=1e-4)
    x0 = sample_joint(joint, 40000)
    loss = masked_diffusion_loss(posterior_fn(joint), x0, schedule="linear", mask_id=MASK, t_min=1e-6,
                                 generator=torch.Generator().manual_seed(6))
    assert loss.mean().item() == pytest.approx(entropy(joint), abs=4 * loss.std().item() / math.sqrt(len(loss)))


def test_wrong_model_pays_more_than_the_true_posterior():
    joint = random_joint(2, seed=7)
    x0 = sample_joint(joint, 5000)
    uniform = lambda xt, t: torch.zeros(*xt.shape, V)  # noqa: E731
    kwargs = dict(schedule="linear", mask_id=MASK, t_min=1e-3)
    true = masked_diffusion_loss(posterior_fn(joint), x0, generator=torch.Generator().manual_seed(8), **kwargs)
    wrong = masked_diffusion_loss(uniform, x0, generator=torch.Generator().manual_seed(8), **kwargs)
    assert wrong.mean() > true.mean() + 0.1


def test_subs_zero_masking_ignores_a_mask_logit():
    joint = random_joint(2, seed=9)
    x0 = sample_joint(joint, 64)
    true = posterior_fn(joint)
    with_mask_logit = lambda xt, t: torch.cat([true(xt, t), torch.full((*xt.shape, 1), 50.0)], -1)  # noqa: E731
    a = masked_diffusion_loss(true, x0, mask_id=MASK, generator=torch.Generator().manual_seed(0))
    b = masked_diffusion_loss(with_mask_logit, x0, mask_id=MASK, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)


def test_weight_mask_splits_the_loss_by_position():
    joint = random_joint(3, seed=10)
    x0 = sample_joint(joint, 256)
    first = torch.tensor([1.0, 1.0, 0.0]).expand(256, 3)

    def loss(weight_mask):
        return masked_diffusion_loss(posterior_fn(joint), x0, mask_id=MASK, weight_mask=weight_mask,
                                     generator=torch.Generator().manual_seed(11))

    torch.testing.assert_close(loss(first) + loss(1 - first), loss(None))
    assert loss(first).sum() > 0 and loss(1 - first).sum() > 0


def joint_counts(x: torch.Tensor) -> torch.Tensor:
    index = (x * V ** torch.arange(x.shape[1] - 1, -1, -1)).sum(1)
    return torch.bincount(index, minlength=V ** x.shape[1]).double()


def assert_matches(samples: torch.Tensor, joint: torch.Tensor):
    counts, expected = joint_counts(samples), joint.reshape(-1) * len(samples)
    assert chisquare(counts[expected > 0], expected[expected > 0]).pvalue > 1e-3
    assert counts[expected == 0].sum() == 0


def test_sampler_is_exact_for_independent_positions_with_few_steps():
    g = torch.Generator().manual_seed(12)
    marginals = torch.rand(3, V, generator=g, dtype=torch.float64) ** 2
    joint = independent_joint(marginals / marginals.sum(1, keepdim=True))
    x = sample_masked(posterior_fn(joint), (20000, 3), steps=2, schedule="cosine", mask_id=MASK, generator=g)
    assert x.dtype == torch.long and (x != MASK).all()
    assert_matches(x, joint)


def test_random_order_one_token_per_step_is_exact_for_a_dependent_joint():
    """Revealing one token per step in random order with the true posterior is any-order autoregressive sampling."""
    joint = random_joint(3, seed=13)
    g = torch.Generator().manual_seed(14)
    x = sample_masked(posterior_fn(joint), (20000, 3), steps=3, schedule="linear", mask_id=MASK, strategy="random",
                      generator=g)
    assert_matches(x, joint)


def test_ancestral_sampler_approaches_a_dependent_joint_as_steps_grow():
    joint = random_joint(3, seed=19) ** 0.5  # milder dependence: few steps leave a visible product-of-marginals error
    joint = joint / joint.sum()

    def total_variation(steps):
        x = sample_masked(posterior_fn(joint), (8000, 3), steps=steps, schedule="cosine", mask_id=MASK,
                          generator=torch.Generator().manual_seed(20))
        return 0.5 * float((joint_counts(x) / len(x) - joint.reshape(-1)).abs().sum())

    one_step = total_variation(1)  # every token from its marginal: the product of marginals
    product = independent_joint(torch.stack([marginal(joint, [d]).reshape(-1) for d in range(3)]))
    assert one_step == pytest.approx(0.5 * float((product - joint).abs().sum()), abs=0.03)
    assert total_variation(32) < 0.045 < one_step  # sampling noise alone is ~0.02 at 8000 samples


def test_infilling_keeps_positions_and_samples_the_conditional():
    joint = random_joint(3, seed=15)
    n, kept_value = 20000, 2
    x_init = torch.full((n, 3), MASK)
    x_init[:, 1] = kept_value
    keep = x_init != MASK
    seen = []
    x = sample_masked(posterior_fn(joint), (n, 3), steps=2, schedule="linear", mask_id=MASK, x_init=x_init,
                      keep_mask=keep, strategy="random", generator=torch.Generator().manual_seed(16),
                      callback=lambda info: seen.append(info["x"][:, 1].clone()))
    assert len(seen) == 2 and all((column == kept_value).all() for column in seen)
    conditional = torch.zeros_like(joint)
    conditional[:, kept_value] = joint[:, kept_value] / joint[:, kept_value].sum()
    assert_matches(x, conditional)


def test_confidence_strategy_reveals_one_token_per_step():
    joint = random_joint(4, seed=17)
    revealed = []
    x = sample_masked(posterior_fn(joint), (32, 4), steps=4, schedule="linear", mask_id=MASK, strategy="confidence",
                      generator=torch.Generator().manual_seed(18),
                      callback=lambda info: revealed.append((info["x"] != MASK).sum(1)))
    assert (x != MASK).all()
    assert [r.tolist() for r in revealed] == [[k] * 32 for k in range(1, 5)]


def test_zero_temperature_is_the_argmax_of_independent_marginals():
    marginals = torch.tensor([[0.2, 0.7, 0.1], [0.5, 0.1, 0.4]], dtype=torch.float64)
    x = sample_masked(posterior_fn(independent_joint(marginals)), (8, 2), steps=3, mask_id=MASK, temperature=0.0)
    assert (x == torch.tensor([1, 0])).all()


def test_sampler_input_errors():
    true = posterior_fn(random_joint(2))
    with pytest.raises(ValueError, match="keep_mask needs x_init"):
        sample_masked(true, (2, 2), steps=2, mask_id=MASK, keep_mask=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="steps"):
        sample_masked(true, (2, 2), steps=0, mask_id=MASK)
    with pytest.raises(ValueError, match="logits_fn must return"):
        sample_masked(lambda xt, t: torch.zeros(2, V), (2, 2), steps=2, mask_id=MASK)
    with pytest.raises(ValueError, match="x_init has mask_id at keep_mask"):
        sample_masked(true, (1, 2), steps=2, mask_id=MASK, x_init=torch.tensor([[MASK, 0]]),
                      keep_mask=torch.tensor([[True, False]]))


# --- conditioning, exact token draws at masked positions only, caching, no host sync in the loss ---


def test_condition_keywords_reach_logits_fn_in_loss_and_sampler():
    """A 'model' that copies a condition tensor: the loss is 0 iff the condition is the data, and sampling copies it."""
    seen = []

    def copy_condition(xt, t, *, target, scale):
        seen.append(scale)
        return 50.0 * torch.nn.functional.one_hot(target, V).float()

    x0 = torch.randint(0, V, (64, 5), generator=torch.Generator().manual_seed(30))
    loss = masked_diffusion_loss(copy_condition, x0, mask_id=MASK, target=x0, scale=1, t=0.9)
    assert loss.max() < 1e-18 and seen == [1]
    assert masked_diffusion_loss(copy_condition, x0, mask_id=MASK, target=(x0 + 1) % V, scale=2, t=0.9).min() > 1
    x = sample_masked(copy_condition, (64, 5), steps=4, mask_id=MASK, target=x0, scale=3,
                      generator=torch.Generator().manual_seed(31))
    assert torch.equal(x, x0) and seen[-1] == 3


KNOWN_LOGITS = torch.tensor([2.0, 0.5, -1.0, 1.5, -6.0, 0.0])  # the -6.0 token has probability ~1e-3


def draw_many(logits, n, temperature=1.0, strategy="ancestral", seed=32):
    """n tokens from one row of logits: n masked positions revealed with probability 1 (t -> s = 0)."""
    x = torch.full((n // 1000, 1000), len(logits))  # mask_id = V, no mask logit
    step = unmask_step(logits.expand(*x.shape, len(logits)), x, t=0.5, s=0.0, schedule="linear", mask_id=len(logits),
                       generator=torch.Generator().manual_seed(seed), temperature=temperature, strategy=strategy)
    return step.reshape(-1)


@pytest.mark.parametrize("temperature, dtype, chunk", [(1.0, torch.float32, None), (0.5, torch.float32, None),
                                                       (1.0, torch.bfloat16, None), (2.0, torch.float64, None),
                                                       (1.0, torch.float32, 6 * 997)])
def test_drawn_tokens_follow_the_tempered_softmax(temperature, dtype, chunk, monkeypatch):
    if chunk is not None:  # many chunks of 997 rows: chunking must not change the distribution
        monkeypatch.setattr("noisecraft.diffusion.masked._CHUNK_ELEMENTS", chunk)
    logits = KNOWN_LOGITS.to(dtype)
    n = 200_000
    counts = torch.bincount(draw_many(logits, n, temperature), minlength=len(logits)).double()
    expected = (logits.double() / temperature).softmax(0) * n  # bf16: the softmax of the rounded logits
    assert chisquare(counts, expected).pvalue > 1e-3
    assert ((counts - expected).abs() <= 5 * expected.sqrt() + 1).all()


@pytest.mark.parametrize("strategy", ["ancestral", "random", "confidence"])
def test_zero_temperature_draws_the_argmax_and_zero_probability_tokens_never(strategy):
    logits = KNOWN_LOGITS.clone()
    assert (draw_many(logits, 4000, temperature=0.0, strategy=strategy) == 0).all()
    logits[0] = -math.inf  # a token the model rules out (like an absent category) is never drawn
    tokens = draw_many(logits, 20_000, strategy=strategy)
    assert (tokens != 0).all() and (tokens < len(logits)).all()


class RecordSoftmax(torch.overrides.TorchFunctionMode):
    """Records the input shape and dtype of every softmax-like call (log_softmax, softmax, cumsum)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in ("log_softmax", "softmax", "cumsum", "logsumexp"):
            self.calls.append((name, tuple(args[0].shape), args[0].dtype))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("strategy", ["ancestral", "random", "confidence"])
def test_unmask_step_normalises_only_masked_rows_in_the_logits_dtype(strategy):
    vocab = 50
    x = torch.randint(0, vocab, (4, 64), generator=torch.Generator().manual_seed(33))
    x[:, ::8] = vocab  # 32 masked positions of 256
    logits = torch.randn(4, 64, vocab, generator=torch.Generator().manual_seed(34)).bfloat16()
    with RecordSoftmax() as mode:
        out = unmask_step(logits, x, t=0.6, s=0.3, schedule="linear", mask_id=vocab, strategy=strategy,
                          generator=torch.Generator().manual_seed(35))
    assert mode.calls and all(len(shape) == 2 and shape[0] <= 32 for _, shape, _ in mode.calls), mode.calls
    assert all(dtype == torch.float32 for *_, dtype in mode.calls)  # bf16 rows upcast to float32, never float64
    kept = x != vocab
    assert torch.equal(out[kept], x[kept]) and (out[~kept] != vocab).any()


def test_cache_skips_the_network_when_no_token_was_revealed():
    joint = random_joint(3, seed=36)
    product = independent_joint(torch.stack([marginal(joint, [d]).reshape(-1) for d in range(3)]))
    true = posterior_fn(product)  # independent positions: the posterior ignores t (and the other tokens)
    calls = {"n": 0}

    def counted(xt, t):
        calls["n"] += 1
        return true(xt, t)

    def run(cache):
        calls["n"] = 0
        x = sample_masked(counted, (4, 3), steps=64, schedule="linear", mask_id=MASK, cache=cache,
                          generator=torch.Generator().manual_seed(37))
        return x, calls["n"]

    (plain, plain_calls), (cached, cached_calls) = run(False), run(True)
    assert torch.equal(plain, cached)
    assert cached_calls < plain_calls / 2  # 64 steps but at most 12 tokens to reveal


def test_loss_without_validation_compiles_to_one_graph():
    """validate=False leaves no Python branch on tensor values: dynamo traces the loss with fullgraph=True."""
    table = torch.randn(V + 1, V, generator=torch.Generator().manual_seed(38))

    def logits_fn(xt, t):
        return table[xt] * t[:, None, None]

    def loss(x0, validate):
        return masked_diffusion_loss(logits_fn, x0, mask_id=MASK, validate=validate)

    x0 = torch.randint(0, V, (8, 5), generator=torch.Generator().manual_seed(39))
    torch._dynamo.reset()
    compiled = torch.compile(loss, backend="eager", fullgraph=True)
    assert compiled(x0, False).shape == (8,)
    torch._dynamo.reset()
    with pytest.raises(Exception, match="(?i)data-dependent|graph break|unsupported|item"):
        torch.compile(loss, backend="eager", fullgraph=True)(x0, True)  # the checks read values on the host
    torch._dynamo.reset()
    with pytest.raises(ValueError, match="token ids"):
        loss(torch.full_like(x0, MASK), True)
