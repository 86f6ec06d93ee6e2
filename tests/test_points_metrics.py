"""PointFlow metrics (noisecraft.points.metrics) against brute-force formulas on tiny sets."""

import itertools

import numpy as np
import pytest

from noisecraft.points import metrics as M


def _brute_cd(x, y):
    a = np.mean([min(np.sum((p - q) ** 2) for q in y) for p in x])
    b = np.mean([min(np.sum((p - q) ** 2) for p in x) for q in y])
    return a + b


def _brute_emd(x, y):
    return min(np.mean([np.linalg.norm(x[i] - y[j]) for i, j in enumerate(perm)])
               for perm in itertools.permutations(range(len(y))))


def _sets(seed=0, s=4, r=5, n=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(s, n, 3)), rng.normal(size=(r, n, 3)) + 0.3


def test_chamfer_and_emd_match_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(5):
        x, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
        assert M.chamfer(x, y) == pytest.approx(_brute_cd(x, y))
        assert M.emd(x, y) == pytest.approx(_brute_emd(x, y))
        assert M.pairwise(x[None], y[None], "cd")[0, 0] == pytest.approx(_brute_cd(x, y))
    with pytest.raises(ValueError, match="same size"):
        M.emd(x, y[:4])


@pytest.mark.parametrize("metric,dist", [("cd", _brute_cd), ("emd", _brute_emd)])
def test_mmd_cov_1nna_match_their_definitions(metric, dist):
    s, r = _sets()
    record = M.evaluate(s, r, metrics=(metric,), normalize="none")
    d_sr = np.array([[dist(x, y) for y in r] for x in s])
    mmd = np.mean([min(d_sr[i, j] for i in range(len(s))) for j in range(len(r))])
    cov = len({int(np.argmin(d_sr[i])) for i in range(len(s))}) / len(r)
    pool = list(s) + list(r)
    labels = [0] * len(s) + [1] * len(r)
    right = 0
    for i, x in enumerate(pool):
        others = [(dist(x, y), j) for j, y in enumerate(pool) if j != i]
        right += labels[min(others)[1]] == labels[i]
    name = metric.upper()
    assert record[f"MMD-{name}"] == pytest.approx(mmd)
    assert record[f"COV-{name}"] == pytest.approx(cov)
    assert record[f"1-NNA-{name}"] == pytest.approx(right / len(pool))


def test_identical_sets_and_separated_sets():
    s, _ = _sets(s=6)
    same = M.evaluate(s, s.copy(), metrics=("cd",), normalize="none")
    assert same["MMD-CD"] == 0 and same["COV-CD"] == 1.0
    far = M.evaluate(s, s + 100.0, metrics=("cd",), normalize="none")
    assert far["1-NNA-CD"] == 1.0


def test_unit_sphere_normalisation():
    rng = np.random.default_rng(2)
    clouds = rng.normal(size=(3, 20, 3)) * 5 + 7
    out = M.normalize_clouds(clouds)
    assert np.allclose(out.mean(1), 0, atol=1e-12)
    assert np.allclose(np.linalg.norm(out, axis=2).max(1), 1.0)
    # scale and translation do not change the metrics under this normalisation
    a = M.evaluate(clouds, clouds[::-1] * 1.0, metrics=("cd",))
    b = M.evaluate(clouds * 3 - 2, clouds[::-1], metrics=("cd",))
    assert a["MMD-CD"] == pytest.approx(b["MMD-CD"])


@pytest.mark.parametrize("metric", ["cd", "emd"])
def test_a_set_against_itself_is_computed_once_per_pair_and_symmetric(metric):
    s, _ = _sets(s=5, n=6)
    full = M.pairwise(s, s.copy(), metric)  # a copy: the general path
    half = M.pairwise(s, s, metric)  # the same object: each pair once
    assert np.allclose(full, half, rtol=1e-12, atol=1e-12) and np.array_equal(half, half.T)
