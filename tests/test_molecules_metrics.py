"""MOSES and targeting metrics against brute-force formulas on tiny sets, and against moses.metrics when the molsets
package's metric code imports (it needs two shims for today's RDKit and pandas, applied only inside that test)."""

from __future__ import annotations

import itertools
import math
import sys
import types

import numpy as np
import pytest

pytest.importorskip("rdkit")

from rdkit import Chem, DataStructs  # noqa: E402
from rdkit.Chem import AllChem  # noqa: E402

from noisecraft.molecules import metrics  # noqa: E402
from noisecraft.molecules.properties import PROPERTIES  # noqa: E402

GEN = ["CCO", "OCC", "c1ccccc1O", "not a molecule", "", "CC(=O)Nc1ccc(O)cc1", "C1CCCCC1c1ccccc1", "CCN(CC)CC",
       "c1ccc2ccccc2c1"]
TRAIN = ["CCO", "c1ccccc1", "CC(=O)Nc1ccc(O)cc1", "CCCC", "c1ccc(-c2ccccc2)cc1"]


def _fp(smiles):
    return AllChem.GetMorganFingerprintAsBitVect(Chem.MolFromSmiles(smiles), 2, nBits=1024)


def _valid(smiles):
    return [Chem.MolToSmiles(m) for m in map(Chem.MolFromSmiles, [s for s in smiles if s]) if m is not None]


def test_counts_and_similarities_match_brute_force():
    valid = _valid(GEN)
    assert metrics.validity(GEN) == pytest.approx(7 / 9)
    assert metrics.uniqueness(valid) == pytest.approx(6 / 7)  # CCO twice
    assert metrics.unique_at(valid, 3) == pytest.approx(2 / 3) and metrics.unique_at(valid, 100) is None
    assert metrics.novelty(valid, set(_valid(TRAIN))) == pytest.approx(4 / 6)
    fps = [_fp(s) for s in valid]
    pairs = [DataStructs.TanimotoSimilarity(a, b) for a, b in itertools.product(fps, fps)]
    ours = metrics.fingerprints([Chem.MolFromSmiles(s) for s in valid])
    assert metrics.internal_diversity(ours, 1) == pytest.approx(1 - np.mean(pairs))
    per_row = np.sqrt(np.square(np.array(pairs).reshape(len(fps), len(fps))).mean(1))  # MOSES: root per molecule
    assert metrics.internal_diversity(ours, 2) == pytest.approx(1 - per_row.mean())
    ref = [_fp(s) for s in TRAIN]
    snn = np.mean([max(DataStructs.BulkTanimotoSimilarity(f, ref)) for f in fps])
    assert metrics.snn(ours, metrics.fingerprints([Chem.MolFromSmiles(s) for s in TRAIN])) == pytest.approx(snn)
    a, b = {"x": 1, "y": 2}, {"y": 2, "z": 2}
    from collections import Counter

    assert metrics.cosine(Counter(a), Counter(b)) == pytest.approx(4 / (math.sqrt(5) * math.sqrt(8)))
    assert math.isnan(metrics.cosine(Counter(), Counter(b)))


def test_distribution_report_and_targeting():
    report = metrics.distribution_metrics(GEN, TRAIN, use_fcd=False)
    assert report["samples"] == 9 and report["valid_samples"] == 7 and report["unique@1k"] is None
    assert {"IntDiv1", "IntDiv2", "SNN/Train", "Frag/Train", "Scaf/Train", "novelty"} <= set(report)
    rows = [{"smiles": "CCO", "target_qed": "0.4"}, {"smiles": "", "target_qed": "0.4"},
            {"smiles": "CC(=O)Nc1ccc(O)cc1", "target_qed": "0.4"}, {"smiles": "CC(=O)Nc1ccc(O)cc1", "target_qed": 0.4}]
    qed = [PROPERTIES["qed"].compute(Chem.MolFromSmiles(s)) for s in ("CCO", "CC(=O)Nc1ccc(O)cc1")]
    out = metrics.targeting_metrics(rows)
    errors = [abs(qed[0] - 0.4), abs(qed[1] - 0.4), abs(qed[1] - 0.4)]
    assert out["qed"]["mae"] == pytest.approx(np.mean(errors)) and out["qed"]["targeted"] == 4
    assert out["qed"]["hit_rate"] == pytest.approx(sum(e <= 0.05 for e in errors) / 4)
    good = [q >= 0.6 and PROPERTIES["sa"].compute(Chem.MolFromSmiles(s)) <= 4
            for q, s in zip(qed, ("CCO", "CC(=O)Nc1ccc(O)cc1"))]
    assert out["quality"] == pytest.approx(sum(good) / 4)  # the duplicate counts once


@pytest.mark.slow  # ChemNet loads in ~10 s on a busy CPU
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fcd_when_fcd_torch_is_installed():
    pytest.importorskip("fcd_torch")
    value, why = metrics.fcd(_valid(GEN), _valid(TRAIN))
    assert why == "" and value > 0 and math.isfinite(value)
    assert metrics.fcd(["CCO"], _valid(TRAIN)) == (None, "FCD needs at least 2 valid molecules on each side")


@pytest.fixture
def moses_metrics(monkeypatch):
    """moses.metrics with the two shims its 2020 code needs (rdkit.six, DataFrame.append), or a skip."""
    pd = pytest.importorskip("pandas")
    six = types.ModuleType("rdkit.six")
    six.iteritems = lambda d: iter(d.items())
    six.PY3 = True
    monkeypatch.setitem(sys.modules, "rdkit.six", six)
    if not hasattr(pd.DataFrame, "append"):
        monkeypatch.setattr(pd.DataFrame, "append", lambda self, other, sort=False: pd.concat([self, other],
                                                                                              sort=sort),
                            raising=False)
    try:
        import moses.metrics.metrics as moses_metrics
    except ImportError as error:
        pytest.skip(f"moses.metrics does not import: {error}")
    return moses_metrics


def test_against_moses_metrics(moses_metrics):
    mm = moses_metrics
    valid = _valid(GEN)
    mols = [Chem.MolFromSmiles(s) for s in valid]
    ref = [Chem.MolFromSmiles(s) for s in TRAIN]
    assert metrics.validity(GEN[:4] + GEN[5:]) == pytest.approx(mm.fraction_valid(GEN[:4] + GEN[5:]))
    assert metrics.unique_at(valid, 5) == pytest.approx(mm.fraction_unique(valid, 5))
    assert metrics.novelty(valid, set(_valid(TRAIN))) == pytest.approx(mm.novelty(valid, _valid(TRAIN)))
    fps = metrics.fingerprints(mols)
    for p in (1, 2):
        assert metrics.internal_diversity(fps, p) == pytest.approx(mm.internal_diversity(mols, p=p))
    assert metrics.snn(fps, metrics.fingerprints(ref)) == pytest.approx(mm.SNNMetric()(ref=ref, gen=mols))
    assert metrics.cosine(metrics.fragments(ref), metrics.fragments(mols)) == pytest.approx(
        mm.FragMetric()(ref=ref, gen=mols))
    ring_set = ["c1ccc2ccccc2c1", "C1CCCCC1c1ccccc1", "c1ccc(-c2ccccc2)cc1", "c1ccc(Cc2ccncc2)cc1"]
    ring_ref = [Chem.MolFromSmiles(s) for s in ring_set[1:] + TRAIN]
    ring_gen = [Chem.MolFromSmiles(s) for s in ring_set + valid]
    assert metrics.cosine(metrics.scaffolds(ring_ref), metrics.scaffolds(ring_gen)) == pytest.approx(
        mm.ScafMetric()(ref=ring_ref, gen=ring_gen))
