"""The PointFlow evaluation protocol (Yang et al. 2019, section 5.2) for generated point clouds: MMD, COV and 1-NNA,
each with the Chamfer distance (CD) and the earth mover's distance (EMD).

Normalisation (``normalize="unit_sphere"``, the default): every cloud, generated and reference alike, is centred on
the mean of its points and divided by the largest distance of a point from that mean, so it lies in the unit ball
and touches its sphere. ``normalize="none"`` compares the clouds as they are (then size differences count).

Distances between two clouds X, Y of N points:

* ``CD(X, Y) = mean_{x in X} min_{y in Y} |x - y|^2 + mean_{y in Y} min_{x in X} |x - y|^2`` (squared distances, as
  in PointFlow's code);
* ``EMD(X, Y) = min over bijections phi: X -> Y of mean_{x in X} |x - phi(x)|``, the exact assignment
  (``scipy.optimize.linear_sum_assignment``), so X and Y must have the same number of points.

With S the generated set and R the reference set, and D one of the two distances:

* ``MMD(S, R) = mean_{Y in R} min_{X in S} D(X, Y)`` (lower is better: fidelity);
* ``COV(S, R) = |{argmin_{Y in R} D(X, Y) : X in S}| / |R|`` (higher is better: coverage);
* ``1-NNA(S, R)``: the leave-one-out accuracy of the 1-nearest-neighbour classifier on S u R labelled by set,
  ``(sum_{X in S} [NN(X) in S] + sum_{Y in R} [NN(Y) in R]) / (|S| + |R|)``; 0.5 is ideal (the sets are
  indistinguishable), 1.0 means every cloud's nearest neighbour is from its own set. Ties go to the first index.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def normalize_clouds(clouds: np.ndarray, mode: str = "unit_sphere") -> np.ndarray:
    """``clouds [M, N, 3]`` centred and scaled as described in the module docstring."""
    clouds = np.asarray(clouds, dtype=np.float64)[..., :3]
    if mode == "none":
        return clouds
    if mode != "unit_sphere":
        raise ValueError(f"normalize must be unit_sphere or none, got {mode!r}")
    centred = clouds - clouds.mean(axis=1, keepdims=True)
    scale = np.linalg.norm(centred, axis=2).max(axis=1)
    return centred / np.maximum(scale, 1e-12)[:, None, None]


def chamfer(x: np.ndarray, y: np.ndarray) -> float:
    """CD of two clouds ``[N, 3]``, ``[M, 3]`` (see the module docstring)."""
    d = ((np.asarray(x)[:, None, :] - np.asarray(y)[None, :, :]) ** 2).sum(-1)
    return float(d.min(1).mean() + d.min(0).mean())


def emd(x: np.ndarray, y: np.ndarray) -> float:
    """EMD of two clouds of the same size: the mean distance under the optimal one-to-one assignment."""
    from scipy.optimize import linear_sum_assignment

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"EMD needs clouds of the same size, got {x.shape[0]} and {y.shape[0]} points")
    d = np.sqrt(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1))
    rows, cols = linear_sum_assignment(d)
    return float(d[rows, cols].mean())


def pairwise(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """``[len(a), len(b)]`` matrix of CD or EMD between the clouds of ``a`` and ``b`` (``b is a``: the symmetric
    matrix of a set with itself, each pair computed once)."""
    symmetric = b is a
    if metric == "cd":  # exact nearest neighbours from k-d trees (one per cloud), far faster than N x N matrices
        from scipy.spatial import cKDTree

        trees_a = [cKDTree(x) for x in a]
        trees_b = trees_a if symmetric else [cKDTree(y) for y in b]
        out = np.zeros((len(a), len(b)))
        for i, x in enumerate(a):
            for j in range(i if symmetric else 0, len(b)):
                there = trees_b[j].query(x)[0]
                back = trees_a[i].query(b[j])[0]
                out[i, j] = np.mean(there**2) + np.mean(back**2)
        return np.triu(out) + np.triu(out, 1).T if symmetric else out
    if metric == "emd":
        out = np.zeros((len(a), len(b)))
        for i, x in enumerate(a):
            for j in range(i if symmetric else 0, len(b)):
                out[i, j] = emd(x, b[j])
        return np.triu(out) + np.triu(out, 1).T if symmetric else out
    raise ValueError(f"metric must be cd or emd, got {metric!r}")


def mmd(d_sr: np.ndarray) -> float:
    """MMD from the generated x reference distance matrix."""
    return float(d_sr.min(axis=0).mean())


def coverage(d_sr: np.ndarray) -> float:
    """COV from the generated x reference distance matrix."""
    return float(len(np.unique(d_sr.argmin(axis=1))) / d_sr.shape[1])


def one_nna(d_ss: np.ndarray, d_rr: np.ndarray, d_sr: np.ndarray) -> float:
    """1-NNA from the three distance matrices (generated-generated, reference-reference, generated-reference)."""
    s, r = len(d_ss), len(d_rr)
    top = np.concatenate([d_ss, d_sr], axis=1)
    bottom = np.concatenate([d_sr.T, d_rr], axis=1)
    full = np.concatenate([top, bottom], axis=0).astype(np.float64)
    np.fill_diagonal(full, np.inf)
    nearest = full.argmin(axis=1)
    is_generated = np.arange(s + r) < s
    return float((is_generated[nearest] == is_generated).mean())


def evaluate(generated: np.ndarray, reference: np.ndarray, *, metrics: tuple[str, ...] = ("cd", "emd"),
             normalize: str = "unit_sphere") -> dict[str, Any]:
    """MMD, COV and 1-NNA with each distance in ``metrics`` (CD, EMD) of ``generated`` against ``reference``
    (arrays ``[M, N, 3]``), normalised by ``normalize``."""
    s, r = normalize_clouds(generated, normalize), normalize_clouds(reference, normalize)
    out: dict[str, Any] = {"generated": len(s), "reference": len(r), "points": int(s.shape[1]),
                           "normalize": normalize}
    for metric in metrics:
        d_sr, d_ss, d_rr = pairwise(s, r, metric), pairwise(s, s, metric), pairwise(r, r, metric)  # s, s: symmetric
        name = metric.upper()
        out[f"MMD-{name}"] = mmd(d_sr)
        out[f"COV-{name}"] = coverage(d_sr)
        out[f"1-NNA-{name}"] = one_nna(d_ss, d_rr, d_sr)
    return out
