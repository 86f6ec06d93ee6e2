"""The rules of a safety policy and the decisions they return.

* :class:`TermRule`: blocked words and phrases, matched on whole words after normalisation (:func:`variants`):
  case- and accent-insensitive (Unicode NFKD, combining marks dropped, casefold), simple leetspeak undone
  (``0->o, 1->i/l, 3->e, 4->a, 5->s, 7->t, @->a, $->s`` inside words that contain a letter) and separators inside
  words removed (``k.i.l.l``, ``k i l l``, ``ki-ll``). A word boundary is kept: the term "kill" does not match
  "skill" or "killer"; a term matches its plural (``s``/``es``) too. ``allow`` lists idioms in which the group's
  terms are harmless ("killing time", "a murder of crows"): a term inside one does not count.
* :class:`ConceptRule`: an unsafe concept given by a name, example phrases and optional ``safe_examples`` (near
  misses that share words with it: "a killer whale"). A text's score for a concept is a similarity margin over
  pooled, L2-normalised MiniLM embeddings (:class:`ConceptScoring`): the mean cosine similarity of its ``top_k``
  closest examples of the concept minus ``safe_weight`` times the mean similarity of its ``top_k`` closest safe
  examples (those of every concept together: a benign text is benign for all of them). The rule fires at
  ``score >= threshold``; its decision names the closest example and the closest allowed use. ``top_k=1,
  safe_weight=0`` is plain nearest-example similarity.
* :class:`Decision`: what one rule said about one text or output: allowed, the rule, its kind, score, threshold,
  the matched text and where it was found.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch

KINDS = ("term", "concept", "output")

LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
LEET_ONE_AS_L = {**LEET, "1": "l"}
_LEET_CHARS = re.escape("".join(LEET))
# a run of letters and leet characters; only runs with a letter are read as leetspeak ("3 circles" stays a number)
_LEET_RUN = re.compile(rf"[a-z{_LEET_CHARS}]+")
_INNER_SEPARATORS = re.compile(r"(?<=[a-z0-9@$])[.\-_*'`~+:;,/\\]+(?=[a-z0-9@$])")
# three or more single characters separated by spaces or punctuation: "k i l l", "k.i.l.l", "k - i - l - l"
_SPACED_LETTERS = re.compile(r"(?<![a-z0-9])(?:[a-z0-9@$][\s.\-_*'`~+:;,/\\]+){2,}[a-z0-9@$](?![a-z0-9])")
_NON_WORD = re.compile(r"[^a-z0-9]+")


def fold(text: str) -> str:
    """Lower case without accents or compatibility forms: NFKD, combining marks dropped, casefold."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _deleet(text: str, table: dict[str, str]) -> str:
    def read(match: re.Match) -> str:
        run = match.group()
        return "".join(table.get(c, c) for c in run) if re.search("[a-z]", run) else run

    return _LEET_RUN.sub(read, text)


def _join_spaced(text: str, keep_first: bool = False) -> str:
    """Spaced-out letters joined; ``keep_first``: a leading one-letter word stays apart ("a n a z i" -> "a nazi")."""
    def join(match: re.Match) -> str:
        run = match.group()
        if keep_first:
            first = re.match(r"[a-z0-9@$][\s.\-_*'`~+:;,/\\]+", run).group()
            return first + re.sub(r"[\s.\-_*'`~+:;,/\\]+", "", run[len(first):])
        return re.sub(r"[\s.\-_*'`~+:;,/\\]+", "", run)

    return _SPACED_LETTERS.sub(join, text)


def _words(text: str) -> str:
    """Words separated by single spaces, with a space at both ends (so ``" term "`` is a whole-word test)."""
    return " " + _NON_WORD.sub(" ", text).strip() + " "


def variants(text: str) -> list[str]:
    """The normalised readings of ``text`` that term rules search: each is lower-case words separated by single
    spaces, with a space at both ends. The first is the plain reading; the others undo obfuscation."""
    folded = fold(text)
    readings = []
    for table in (None, LEET, LEET_ONE_AS_L):
        base = folded if table is None else _deleet(folded, table)
        for form in (base, _INNER_SEPARATORS.sub("", base), _join_spaced(base), _join_spaced(base, keep_first=True)):
            if table is not None:
                form = _deleet(form, table)  # characters joined by the separator removal
            words = _words(form)
            if words not in readings:
                readings.append(words)
    return readings


def normalise(text: str) -> str:
    """One readable de-obfuscated form of ``text`` (what the concept rules embed besides the text itself):
    accents folded, leetspeak undone, spaced-out letters joined, punctuation kept as spaces."""
    return _words(_deleet(_join_spaced(_INNER_SEPARATORS.sub("", _deleet(fold(text), LEET))), LEET)).strip()



class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class Decision:
    """What one rule said about one input or output.

    ``allowed``: False when the rule fired; ``rule``: its name (the blocked term, the concept, the output
    classifier); ``kind``: "term", "concept" or "output"; ``score`` and ``threshold``: the rule fires at
    ``score >= threshold`` (a term match scores 1.0 against 1.0); ``matched``: the text (or property) that made
    the score; ``where``: which input or output (``"prompt"``, ``"output 2"``)."""

    allowed: bool
    rule: str
    kind: str
    score: float
    threshold: float
    matched: str = ""
    where: str = ""
    detail: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Decision kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def reason(self) -> str:
        """The decision in words a user can act on."""
        where = (self.where if self.where.startswith("output") else f"the {self.where}") if self.where else \
            "the request"
        if self.kind == "term":
            text = f"{where} contains the blocked term {self.rule!r}"
            if self.matched and fold(self.matched) != self.rule:
                text += f" (as {self.matched!r})"
            return text
        if self.kind == "concept":
            verb = "matches" if not self.allowed else "is closest to"
            relation = ">=" if self.score >= self.threshold else "<"
            text = (f"{where} {verb} the blocked concept {self.rule!r} (score {self.score:.2f} {relation} "
                    f"{self.threshold:.3g})")
            if self.matched:
                text += f", like {self.matched!r}"
            return text + (f"; {self.detail}" if self.detail else "")
        relation = ">=" if self.score >= self.threshold else "<"
        return (f"{where} fails the output check {self.rule!r}: {self.detail or self.matched} "
                f"({self.score:g} {relation} {self.threshold:g})")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["score"], data["threshold"] = round(float(self.score), 4), round(float(self.threshold), 4)
        return {k: v for k, v in data.items() if v != "" or k in ("rule", "kind")}


@dataclass(frozen=True)
class TermRule:
    """Blocked terms (words or phrases) of one group (e.g. "violence"). See the module docstring for matching."""

    name: str
    terms: tuple[str, ...]
    allow: tuple[str, ...] = ()  # idioms in which a term is harmless ("killing time", "a murder of crows")

    def __post_init__(self):
        object.__setattr__(self, "allow", tuple(dict.fromkeys(_words(fold(a)) for a in self.allow if a.strip())))
        cleaned = []
        for term in self.terms:
            words = _words(fold(term)).strip()
            if not words:
                raise ValueError(f"term rule {self.name!r}: the term {term!r} has no letters or digits")
            cleaned.append(words)
        object.__setattr__(self, "terms", tuple(dict.fromkeys(cleaned)))
        plural = r"(?:s|es)?"
        object.__setattr__(self, "_patterns", [
            (term, re.compile(r" " + r" ".join(re.escape(w) for w in term.split()) + plural + r" "))
            for term in self.terms])

    def check(self, text: str, where: str = "", readings: list[str] | None = None) -> Decision | None:
        """The first blocked term found in ``text`` as a refusing Decision, else None."""
        readings = variants(text) if readings is None else readings
        if self.allow:
            readings = [self._without_idioms(reading) for reading in readings]
        for term, pattern in self._patterns:
            for reading in readings:
                found = pattern.search(reading)
                if found:
                    return Decision(False, term, "term", 1.0, 1.0, matched=_original_span(text, found.group()),
                                    where=where, detail=f"term group {self.name!r}")
        return None


    def _without_idioms(self, reading: str) -> str:
        for idiom in self.allow:
            reading = reading.replace(idiom, " | ")
        return reading


def _original_span(text: str, normalised: str) -> str:
    """The words of ``text`` that read as ``normalised`` (for the message), else the normalised words."""
    target = normalised.strip().replace(" ", "")
    tokens = text.split()
    for size in range(1, min(len(tokens), 12) + 1):
        for start in range(len(tokens) - size + 1):
            span = " ".join(tokens[start:start + size])
            if any(target in reading.replace(" ", "") for reading in variants(span)):
                return span.strip(".,;:!?\"'()")
    return normalised.strip()


@dataclass
class ConceptRule:
    """An unsafe concept: ``examples`` (phrases), ``threshold`` on its score and optional ``safe_examples`` (near
    misses that share words with it, e.g. "a killer whale")."""

    name: str
    examples: list[str]
    threshold: float
    safe_examples: list[str] = field(default_factory=list)
    description: str = ""

    def __post_init__(self):
        if not self.examples or not all(isinstance(e, str) and e.strip() for e in self.examples):
            raise ValueError(f"concept {self.name!r}: examples must be a non-empty list of phrases")
        if not -2.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"concept {self.name!r}: threshold is a score in [-2, 1] (a similarity margin), got "
                             f"{self.threshold}")
        self.threshold = float(self.threshold)


@dataclass(frozen=True)
class ConceptScoring:
    """How a concept's score is made from similarities (the policy's ``concept_scoring``): the mean of the
    ``top_k`` closest examples, minus ``safe_weight`` times the mean of the ``top_k`` closest safe examples."""

    top_k: int = 1
    safe_weight: float = 0.0

    def __post_init__(self):
        if not isinstance(self.top_k, int) or self.top_k < 1:
            raise ValueError(f"concept_scoring: top_k must be an integer >= 1, got {self.top_k!r}")
        if not 0.0 <= float(self.safe_weight) <= 2.0:
            raise ValueError(f"concept_scoring: safe_weight must be in [0, 2], got {self.safe_weight!r}")
        object.__setattr__(self, "safe_weight", float(self.safe_weight))


@dataclass(frozen=True)
class ConceptScore:
    """One text against one concept: the score and what made it (for the decision's reason)."""

    score: float
    example: str  # the closest example of the concept
    similarity: float  # mean similarity of the top_k closest examples
    safe_example: str = ""  # the closest safe example ("" when the policy has none)
    safe_similarity: float = 0.0  # mean similarity of the top_k closest safe examples


Encode = Callable[[list[str]], torch.Tensor]  # texts -> [B, D] L2-normalised embeddings


def minilm_encode(texts: list[str]) -> torch.Tensor:
    """Pooled MiniLM sentence embeddings of ``texts`` (the shared frozen encoder on the CPU), ``[B, 384]``."""
    from noisecraft.text.encoders import shared_text_encoder

    encoder = shared_text_encoder({"name": "minilm"}, "cpu")
    return encoder.encode(texts)[2].float().cpu()


def chunks(text: str, words: int = 48, stride: int = 32, max_chars: int = 400) -> list[str]:
    """Overlapping word windows of ``text`` short enough for the encoder (a long output is scored by its worst
    window)."""
    tokens = text.split()
    if len(tokens) <= words and len(text) <= max_chars:
        return [text]
    pieces = [" ".join(tokens[i:i + words]) for i in range(0, max(1, len(tokens) - words + stride), stride)]
    return [p[j:j + max_chars] for p in pieces for j in range(0, max(1, len(p)), max_chars)]


class ConceptMatcher:
    """Scores texts against every :class:`ConceptRule` with one encoder; example embeddings are computed once."""

    def __init__(self, concepts: Sequence[ConceptRule], encode: Encode | None = None,
                 scoring: ConceptScoring | None = None):
        self.concepts = list(concepts)
        self.encode = encode or minilm_encode
        self.scoring = scoring or ConceptScoring()
        self.safe_examples = list(dict.fromkeys(s for c in self.concepts for s in c.safe_examples))
        self._examples: tuple[list[torch.Tensor], torch.Tensor | None] | None = None
        self._lock = threading.Lock()

    def _example_embeddings(self):
        with self._lock:
            if self._examples is None:
                unsafe = self.encode([e for c in self.concepts for e in c.examples])
                sizes = [len(c.examples) for c in self.concepts]
                safe = self.encode(self.safe_examples) if self.safe_examples else None
                self._examples = (list(unsafe.split(sizes)), safe)
            return self._examples

    def _top(self, sims: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row of ``sims`` [forms, examples]: the mean of the top_k similarities and the closest example."""
        k = min(self.scoring.top_k, sims.shape[1])
        return sims.topk(k, dim=1).values.mean(dim=1), sims.argmax(dim=1)

    def scores(self, texts: Sequence[str]) -> list[list[ConceptScore]]:
        """For each text, one :class:`ConceptScore` per concept. A text is read as itself and as its
        de-obfuscated form (:func:`normalise`), long texts by windows: the reading with the highest score counts."""
        if not self.concepts:
            return [[] for _ in texts]
        readings = []
        for text in texts:
            forms = [piece for form in dict.fromkeys([text.strip(), normalise(text)]) if form
                     for piece in chunks(form)]
            readings.append(forms or [""])
        flat = [form for forms in readings for form in forms]
        embedded = self.encode(flat) if any(flat) else torch.zeros(len(flat), 1)
        unsafe, safe = self._example_embeddings()
        weight = self.scoring.safe_weight
        result, row = [], 0
        for forms in readings:
            block = embedded[row:row + len(forms)]
            row += len(forms)
            if safe is not None:
                safe_sim, safe_index = self._top(block @ safe.T)
            else:
                safe_sim, safe_index = torch.zeros(len(forms)), None
            per_concept = []
            for concept, examples in zip(self.concepts, unsafe):
                sim, index = self._top(block @ examples.T)
                margin = sim - weight * safe_sim
                best = int(margin.argmax())
                per_concept.append(ConceptScore(
                    float(margin[best]), concept.examples[int(index[best])], float(sim[best]),
                    self.safe_examples[int(safe_index[best])] if safe_index is not None else "",
                    float(safe_sim[best])))
            result.append(per_concept)
        return result

    def check(self, texts: Sequence[str], wheres: Sequence[str]) -> list[list[Decision]]:
        """One Decision per concept for each text (fired or not)."""
        decisions = []
        for (where, per_concept) in zip(wheres, self.scores(texts)):
            row = []
            for concept, scored in zip(self.concepts, per_concept):
                detail = ""
                if self.scoring.safe_weight and scored.safe_example:
                    detail = (f"similarity {scored.similarity:.2f} to its closest examples minus "
                              f"{self.scoring.safe_weight:g} x {scored.safe_similarity:.2f} to allowed uses like "
                              f"{scored.safe_example!r}")
                row.append(Decision(scored.score < concept.threshold, concept.name, "concept",
                                    round(scored.score, 4), concept.threshold, matched=scored.example, where=where,
                                    detail=detail))
            decisions.append(row)
        return decisions
