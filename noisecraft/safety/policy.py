"""A safety policy: blocked terms, unsafe concepts and per-modality output checks, read from JSON (or YAML).

The file (see ``default_policy.json``, the documented default)::

    {
      "name": "my-deployment", "version": 1, "description": "...",
      "extends": "default",                       # optional: start from the default (or another file's) rules
      "text_params": {"exclude": ["negative_prompt"]},   # str/strings parameters NOT checked before generation
      "terms": [{"name": "violence", "terms": ["kill", "murder", ...], "allow": ["killing time", ...]}],
      "concepts": [{"name": "violence", "threshold": 0.15, "examples": [...], "safe_examples": [...]}],
      "concept_scoring": {"top_k": 5, "safe_weight": 0.8},   # score = mean sim of 5 closest examples - 0.8 x
                                                             # mean sim of 5 closest safe examples (rules.py)
      "outputs": {"image": [{"classifier": "shapes", "action": "refuse", "forbid_colours": ["purple"]}],
                  "text": [{"classifier": "text_rules", "action": "filter"}]}
    }

With ``extends``, terms and concepts are added to the base's (a concept of the same name replaces the base's),
``outputs`` replace the base's per modality and ``text_params`` and ``concept_scoring`` replace the base's. Unknown keys are errors that
name them. ``action`` is "refuse" (the whole request is refused with the reason) or "filter" (offending items
are removed, the generation's notes and its ``parameters["safety"]`` say which and why; refused if none is left).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Sequence

from noisecraft.safety.rules import (ConceptMatcher, ConceptRule, ConceptScoring, Decision, Encode, PolicyError,
                                     TermRule, variants)

DEFAULT_POLICY = "default_policy.json"
ACTIONS = ("refuse", "filter")
_TOP_KEYS = {"name", "version", "description", "extends", "text_params", "terms", "concepts", "concept_scoring",
             "outputs"}


@dataclass(frozen=True)
class OutputCheck:
    """One output check of a modality: the classifier's name, what to do with a failing item, its options."""

    classifier: str
    action: str = "refuse"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Policy:
    name: str = "custom"
    version: int | str = 1
    description: str = ""
    exclude_params: tuple[str, ...] = ()
    terms: list[TermRule] = field(default_factory=list)
    concepts: list[ConceptRule] = field(default_factory=list)
    scoring: ConceptScoring = field(default_factory=ConceptScoring)
    outputs: dict[str, list[OutputCheck]] = field(default_factory=dict)
    source: str = ""
    encode: Encode | None = None  # texts -> [B, D] normalised embeddings; None: the shared MiniLM encoder

    def __post_init__(self):
        self._matcher: ConceptMatcher | None = None

    # --- identity (recorded with every generation) ---

    def fingerprint(self) -> str:
        """A short hash of the rules (not of the file's layout): which policy decided."""
        rules = {"terms": [[t.name, list(t.terms), list(t.allow)] for t in self.terms],
                 "concepts": [[c.name, c.examples, c.threshold, c.safe_examples] for c in self.concepts],
                 "scoring": [self.scoring.top_k, self.scoring.safe_weight],
                 "outputs": {m: [[c.classifier, c.action, c.options] for c in checks]
                             for m, checks in sorted(self.outputs.items())},
                 "exclude": list(self.exclude_params)}
        return hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:12]

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.fingerprint()}

    # --- text ---

    @property
    def matcher(self) -> ConceptMatcher:
        if self._matcher is None:
            self._matcher = ConceptMatcher(self.concepts, self.encode, self.scoring)
        return self._matcher

    def check_texts(self, texts: Sequence[str], wheres: Sequence[str] | None = None, *, terms: bool = True,
                    concepts: bool = True) -> list[list[Decision]]:
        """Every decision for each text: the blocked terms found (refusing), then one per concept (refusing when
        it fired). A text with a blocked term is still scored by the concepts (the record shows both)."""
        texts = list(texts)
        wheres = list(wheres) if wheres is not None else [""] * len(texts)
        out: list[list[Decision]] = [[] for _ in texts]
        if terms:
            for i, text in enumerate(texts):
                readings = variants(text)
                out[i] += [d for rule in self.terms if (d := rule.check(text, wheres[i], readings)) is not None]
        if concepts and self.concepts:
            for i, row in enumerate(self.matcher.check(texts, wheres)):
                out[i] += row
        return out

    def check_text(self, text: str, where: str = "", **kwargs) -> list[Decision]:
        return self.check_texts([text], [where], **kwargs)[0]

    def first_refusal(self, text: str, where: str = "", **kwargs) -> Decision | None:
        """The decision that refuses ``text`` (a term before a concept, the highest-scoring concept), or None."""
        return refusal(self.check_text(text, where, **kwargs))


def refusal(decisions: Sequence[Decision]) -> Decision | None:
    """The refusing decision to report among ``decisions``: a blocked term first, else the concept or output
    check that exceeded its threshold by the most."""
    refused = [d for d in decisions if not d.allowed]
    if not refused:
        return None
    return min(refused, key=lambda d: (("term", "output", "concept").index(d.kind), -(d.score - d.threshold)))


# --- reading policies ---


def default_policy_path() -> Path:
    return Path(str(resources.files("noisecraft.safety") / DEFAULT_POLICY))


def example_policy_path(name: str) -> Path:
    """A policy shipped as an example beside the default (``"shapes_deployment"``)."""
    path = default_policy_path().parent / f"{name.removesuffix('.json')}.json"
    if not path.is_file():
        shipped = sorted(p.stem for p in path.parent.glob("*.json"))
        raise PolicyError(f"no shipped policy named {name!r}; shipped: {', '.join(shipped)}")
    return path


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PolicyError(f"safety policy {path}: no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as error:
            raise PolicyError(f"safety policy {path}: YAML policies need pyyaml (pip install pyyaml); or write "
                              "it as JSON") from error
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise PolicyError(f"safety policy {path}: not valid YAML: {error}") from error
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise PolicyError(f"safety policy {path}: not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise PolicyError(f"safety policy {path}: must be an object (a mapping), got {type(data).__name__}")
    return data


def _list_of(value, what: str, where: str) -> list:
    if not isinstance(value, list):
        raise PolicyError(f"{where}: {what} must be a list, got {type(value).__name__}")
    return value


def _check_keys(data: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")


def policy_from_dict(data: dict[str, Any], *, source: str = "policy", base_dir: Path | None = None,
                     _seen: tuple[str, ...] = ()) -> Policy:
    """Build a :class:`Policy` from its JSON form (see the module docstring)."""
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: a policy must be an object, got {type(data).__name__}")
    _check_keys(data, _TOP_KEYS, source)
    base = Policy()
    if data.get("extends"):
        base = _load_base(str(data["extends"]), source, base_dir, _seen)
    terms = {t.name: t for t in base.terms}
    for i, entry in enumerate(_list_of(data.get("terms", []), "terms", source)):
        where = f"{source}: terms[{i}]"
        if not isinstance(entry, dict):
            raise PolicyError(f"{where}: must be an object with name and terms")
        _check_keys(entry, {"name", "terms", "allow"}, where)
        words = _list_of(entry.get("terms"), "terms", where)
        if not words or not all(isinstance(w, str) for w in words):
            raise PolicyError(f"{where}: terms must be a non-empty list of strings")
        name = str(entry.get("name", f"terms {i}"))
        try:
            allow = _list_of(entry.get("allow", []), "allow", where)
            previous = terms.get(name)
            rule = TermRule(name, tuple((previous.terms if previous else ()) + tuple(words)),
                            tuple((previous.allow if previous else ()) + tuple(str(a) for a in allow)))
        except ValueError as error:
            raise PolicyError(f"{where}: {error}") from error
        terms[name] = rule
    concepts = {c.name: c for c in base.concepts}
    for i, entry in enumerate(_list_of(data.get("concepts", []), "concepts", source)):
        where = f"{source}: concepts[{i}]"
        if not isinstance(entry, dict) or "name" not in entry:
            raise PolicyError(f"{where}: must be an object with name, threshold and examples")
        _check_keys(entry, {"name", "threshold", "examples", "safe_examples", "description"}, where)
        if "threshold" not in entry or "examples" not in entry:
            raise PolicyError(f"{where} ({entry['name']!r}): needs a threshold and examples")
        try:
            concepts[entry["name"]] = ConceptRule(str(entry["name"]), list(entry["examples"]),
                                                  float(entry["threshold"]), list(entry.get("safe_examples", [])),
                                                  str(entry.get("description", "")))
        except (TypeError, ValueError) as error:
            raise PolicyError(f"{where}: {error}") from error
    outputs = dict(base.outputs)
    raw_outputs = data.get("outputs", {})
    if not isinstance(raw_outputs, dict):
        raise PolicyError(f"{source}: outputs must map a modality to a list of checks")
    for modality, checks in raw_outputs.items():
        parsed = []
        for i, entry in enumerate(_list_of(checks, f"outputs[{modality!r}]", source)):
            where = f"{source}: outputs[{modality!r}][{i}]"
            if not isinstance(entry, dict) or "classifier" not in entry:
                raise PolicyError(f"{where}: must be an object with a classifier name")
            options = {k: v for k, v in entry.items() if k not in ("classifier", "action")}
            action = entry.get("action", "refuse")
            if action not in ACTIONS:
                raise PolicyError(f"{where}: action must be one of {ACTIONS}, got {action!r}")
            parsed.append(OutputCheck(str(entry["classifier"]), action, options))
        outputs[modality] = parsed
    scoring = base.scoring
    if "concept_scoring" in data:
        raw = data["concept_scoring"]
        if not isinstance(raw, dict):
            raise PolicyError(f'{source}: concept_scoring must be an object like {{"top_k": 5, "safe_weight": 0.8}}')
        _check_keys(raw, {"top_k", "safe_weight"}, f"{source}: concept_scoring")
        try:
            scoring = ConceptScoring(**raw)
        except (TypeError, ValueError) as error:
            raise PolicyError(f"{source}: {error}") from error
    exclude = base.exclude_params
    if "text_params" in data:
        text_params = data["text_params"]
        if not isinstance(text_params, dict):
            raise PolicyError(f"{source}: text_params must be an object like {{\"exclude\": [\"negative_prompt\"]}}")
        _check_keys(text_params, {"exclude"}, f"{source}: text_params")
        exclude = tuple(str(p) for p in _list_of(text_params.get("exclude", []), "exclude", f"{source}: text_params"))
    policy = Policy(name=str(data.get("name", base.name if data.get("extends") else "custom")),
                    version=data.get("version", base.version), description=str(data.get("description", "")),
                    exclude_params=exclude, terms=list(terms.values()), concepts=list(concepts.values()),
                    scoring=scoring, outputs=outputs, source=source)
    from noisecraft.safety.outputs import validate_outputs  # the classifier registry

    validate_outputs(policy)
    return policy


def _load_base(name: str, source: str, base_dir: Path | None, seen: tuple[str, ...]) -> Policy:
    path = default_policy_path() if name == "default" else Path(name)
    if not path.is_absolute() and name != "default" and base_dir is not None:
        path = base_dir / path
    key = str(path.resolve())
    if key in seen:
        raise PolicyError(f"{source}: 'extends' makes a cycle through {path}")
    return policy_from_dict(_read(path), source=str(path), base_dir=path.parent, _seen=seen + (key,))


def load_policy(policy: "str | Path | dict | Policy | None" = None) -> Policy:
    """A :class:`Policy` from a file (JSON, or YAML with pyyaml), a dict, a Policy, or None / "default" for the
    shipped default (``noisecraft/safety/default_policy.json``)."""
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, dict):
        return policy_from_dict(policy)
    if policy is None or str(policy) == "default":
        path = default_policy_path()
    else:
        path = Path(policy)
    return policy_from_dict(_read(path), source=str(path), base_dir=path.parent)
