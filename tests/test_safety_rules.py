"""Safety rules without the text encoder: term normalisation, decisions, policy files, output classifiers, the
environment switch. (The MiniLM concept rules and the checks through real pipelines: test_safety_checks.py.)"""

import json

import numpy as np
import pytest
import torch

from noisecraft import safety
from noisecraft.protocol import _CHECKS
from noisecraft.safety import (ConceptRule, Decision, PolicyError, TermRule, load_policy, normalise, policy_from_dict,
                               refusal, variants)
from noisecraft.safety.outputs import build_classifier
from noisecraft.safety.rules import ConceptMatcher, ConceptScoring
from noisecraft.shapes.world import Scene, ShapeObject, render


@pytest.fixture(autouse=True)
def no_safety_left_behind():
    yield
    safety.disable()


@pytest.fixture(scope="module")
def default():
    return load_policy()


def terms_hit(policy, text):
    return [d.rule for d in policy.check_text(text, "prompt", concepts=False) if not d.allowed]


def test_word_boundary_accents_leetspeak_and_separators():
    rule = TermRule("violence", ("kill", "hate speech"))
    for text in ("kill", "KILLS", "kíll", "k1ll", "K.I.L.L", "k i l l", "k-i-l-l", "ki_ll", "k*i*l*l them",
                 "Hate   speech!", "h@te $peech"):
        assert rule.check(text) is not None, text
    for text in ("skill", "a killer whale", "skillet", "kiln", "speech about hate", "3 circles"):
        assert rule.check(text) is None, text
    assert variants("3 circles") == [" 3 circles "]  # a number alone is not leetspeak
    assert normalise("a m@n b3ating up a str@nger") == "a man beating up a stranger"
    assert TermRule("hate", ("nazi",)).check("a N A Z I salute") is not None  # the article stays apart


def test_default_terms_allow_idioms(default):
    assert terms_hit(default, "k1ll everyone") == ["kill"]
    assert terms_hit(default, "killing people") == ["killing"]
    for text in ("killing time at the airport", "a murder of crows", "a grammar nazi t-shirt",
                 "cutting myself a slice of cake", "shoot a photo of a red circle", "a killer whale"):
        assert terms_hit(default, text) == [], text


def test_decision_fields_and_reasons():
    decision = TermRule("violence", ("kill",)).check("please k.i.l.l it", "prompt")
    assert (decision.allowed, decision.rule, decision.kind, decision.score, decision.threshold) == \
        (False, "kill", "term", 1.0, 1.0)
    assert decision.matched == "k.i.l.l" and decision.where == "prompt"
    assert decision.reason == "the prompt contains the blocked term 'kill' (as 'k.i.l.l')"
    concept = Decision(False, "violence", "concept", 0.7134, 0.55, matched="a violent attack", where="prompt")
    assert concept.reason.startswith("the prompt matches the blocked concept 'violence' (score 0.71 >= 0.55)")
    assert concept.to_dict() == {"allowed": False, "rule": "violence", "kind": "concept", "score": 0.7134,
                                 "threshold": 0.55, "matched": "a violent attack", "where": "prompt"}
    assert refusal([concept, decision]) is decision  # a term is reported before a concept
    assert refusal([Decision(True, "x", "concept", 0.1, 0.5)]) is None
    with pytest.raises(ValueError, match="kind"):
        Decision(True, "x", "keyword", 0, 1)


def bag_of_words(texts):
    """A stand-in encoder: normalised word counts over a tiny vocabulary."""
    vocab = ["attack", "hurt", "people", "whale", "ocean", "red", "circle"]
    rows = torch.tensor([[t.lower().split().count(w) + 1e-3 for w in vocab] for t in texts])
    return torch.nn.functional.normalize(rows, dim=-1)


def test_concept_threshold_and_safe_examples_with_a_stand_in_encoder():
    concept = ConceptRule("violence", ["attack people", "hurt people"], 0.3, safe_examples=["whale ocean attack"])
    plain = ConceptMatcher([concept], bag_of_words)  # top_k 1, safe_weight 0: nearest-example similarity
    fired, calm, near_miss = [row[0] for row in plain.check(
        ["attack people", "red circle", "whale attack ocean"], ["prompt"] * 3)]
    assert not fired.allowed and fired.score >= 0.99 and fired.matched == "attack people"
    assert calm.allowed and calm.score < 0.3
    assert not near_miss.allowed  # shares "attack": without safe examples the near miss fires
    margin = ConceptMatcher([concept], bag_of_words, ConceptScoring(top_k=2, safe_weight=1.0))
    fired, calm, near_miss = [row[0] for row in margin.check(
        ["attack people", "red circle", "whale attack ocean"], ["prompt"] * 3)]
    vectors = bag_of_words(["attack people", "hurt people", "whale ocean attack"])
    top2 = float((vectors[0] @ vectors[:2].T).mean())  # mean of the two closest examples (exact)
    assert fired.score == pytest.approx(top2 - float(vectors[0] @ vectors[2]), abs=1e-4) and not fired.allowed
    assert near_miss.allowed and near_miss.score < 0  # closer to its allowed use than to the concept
    assert "allowed uses like 'whale ocean attack'" in near_miss.reason and near_miss.matched == "attack people"
    with pytest.raises(ValueError, match="top_k"):
        ConceptScoring(top_k=0)


def test_policy_files_json_yaml_extends_and_errors(tmp_path, default):
    assert default.name == "default" and {c.name for c in default.concepts} == \
        {"violence", "weapons", "self-harm", "hate"}
    assert default.exclude_params == ("negative_prompt", "where")  # steering away; column values of tables
    assert load_policy().fingerprint() == default.fingerprint()  # stable identity
    yaml = pytest.importorskip("yaml")
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"name": "strict", "extends": "default", "text_params": {"exclude": []},
                                    "terms": [{"name": "extra", "terms": ["purple"]}],
                                    "concepts": [{"name": "hate", "threshold": 0.9, "examples": ["x y"]}]}))
    strict = load_policy(path)
    assert strict.name == "strict" and strict.exclude_params == ()
    assert terms_hit(strict, "a purple circle") == ["purple"] and terms_hit(strict, "k1ll") == ["kill"]
    assert [c.threshold for c in strict.concepts if c.name == "hate"] == [0.9]
    assert strict.fingerprint() != default.fingerprint()
    bad = [({"terms": [{"name": "x", "terms": ["a"], "colour": 1}]}, "unknown key 'colour'"),
           ({"concepts": [{"name": "x", "threshold": 2, "examples": ["a"]}]}, "threshold"),
           ({"concepts": [{"name": "x", "examples": ["a"]}]}, "needs a threshold"),
           ({"concept_scoring": {"top_k": 5, "weight": 1}}, "unknown key 'weight'"),
           ({"concept_scoring": {"top_k": -1}}, "top_k must be an integer >= 1"),
           ({"outputs": {"image": [{"classifier": "nope"}]}}, "unknown output classifier 'nope'"),
           ({"outputs": {"image": [{"classifier": "shapes", "forbid_colours": ["pink"]}]}}, "'pink'"),
           ({"outputs": {"image": [{"classifier": "shapes", "max_objects": 2, "action": "hide"}]}}, "action"),
           ({"outputs": {"molecules": [{"classifier": "molecule_filters"}]}}, "molecule"),
           ({"blocked": []}, "unknown key 'blocked'")]
    for data, message in bad:
        with pytest.raises(PolicyError, match=message):
            policy_from_dict(data)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(PolicyError, match="broken.json: not valid JSON"):
        load_policy(tmp_path / "broken.json")


def rendered(*objects):
    image = render(Scene("count", tuple(ShapeObject(c, s, "large", xy) for c, s, xy in objects)), 32)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1


def test_shapes_output_classifier_on_synthetic_images():
    classify = build_classifier("shapes", {"forbid_colours": ["purple"], "max_objects": 1, "name": "deployment"})
    purple = rendered(("purple", "circle", (0.25, 0.25)), ("red", "square", (0.75, 0.75)))
    red = rendered(("red", "circle", (0.5, 0.5)))
    grey = torch.zeros(1, 8, 8)
    (colour, count), (colour_ok, count_ok), (not_applicable,) = classify(None, None, [purple, red, grey])
    assert not colour.allowed and colour.kind == "output" and colour.rule == "deployment"
    assert (colour.score, colour.threshold) == (1, 1) and "purple circle" in colour.matched
    assert not count.allowed and (count.score, count.threshold) == (2, 2)
    assert colour_ok.allowed and count_ok.allowed
    assert not_applicable.allowed and "not applicable" in not_applicable.detail


def test_environment_switch(monkeypatch, tmp_path):
    monkeypatch.setenv(safety.ENV, "off")
    assert safety.setting() is None and safety.ensure_enabled() is None and not safety.is_enabled()
    monkeypatch.setenv(safety.ENV, "on")
    before = len(_CHECKS["before"])
    handle = safety.ensure_enabled()
    assert handle is not None and handle.policy.name == "default" and safety.is_enabled()
    assert safety.ensure_enabled() is handle and len(_CHECKS["before"]) == before + 1  # idempotent
    safety.disable()
    assert not safety.is_enabled() and len(_CHECKS["before"]) == before
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"name": "mine", "terms": [{"name": "t", "terms": ["purple"]}]}))
    monkeypatch.setenv(safety.ENV, str(path))
    assert safety.ensure_enabled().policy.name == "mine"
    monkeypatch.delenv(safety.ENV)
    assert safety.setting() == "default"
    with safety.enable() as handle:  # an explicit enable replaces the installed policy; a context manager
        assert safety.active() is handle and handle.policy.name == "default"
        assert safety.ensure_enabled() is handle
    assert not safety.is_enabled() and len(_CHECKS["before"]) == before
