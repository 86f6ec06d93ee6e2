"""The one pipeline protocol every modality implements; the CLI, ``noisecraft.load`` and the service use only this.

A pipeline is a loaded model folder. It says which parameters it takes (:class:`Param`: name, kind, default,
limits, help: enough for ``--help``, an HTTP schema and a web form), generates from a request with a seed, a
progress callback and a cancel check, and saves what it generated with its full parameters::

    pipeline = noisecraft.load("runs/digits")
    print(pipeline.describe())
    result = pipeline.generate({"labels": ["7"], "n": 4}, seed=0, progress=lambda done, total: ...,
                               cancel=lambda: False)
    files = pipeline.save_outputs(result, "outputs")

Rules every implementation keeps (the contract test, ``tests/test_contract.py``, checks them for every registered
modality): the same parameters and seed give the same items and the same saved bytes (timings live in
``Generation.seconds``, outside the record); generating never changes state that a concurrent request could see
(no device moves, no shared caches without a lock); a bad parameter is refused with a message that names it.

Checks before and after generation (:func:`add_check`) run for every modality and every caller (API, CLI, HTTP):
the place for safety filters, which refuse with a reason (:class:`Refused`) instead of a silent black image.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

Progress = Callable[[int, int], None]  # progress(done, total), called after each step
Cancel = Callable[[], bool]  # cancel() -> True stops generation at its next step

KINDS = ("int", "float", "str", "bool", "choice", "strings", "image")


class ParameterError(ValueError):
    """A request parameter is unknown, missing or out of its limits; ``name`` says which."""

    def __init__(self, name: str, message: str):
        super().__init__(f"parameter {name!r}: {message}")
        self.name = name


class Cancelled(Exception):
    """Generation stopped because its cancel check said so (not an error: nothing is saved)."""


class Refused(ValueError):
    """A check refused the request or its output; ``reason`` says why in words a user can act on."""

    def __init__(self, reason: str, *, check: str = ""):
        super().__init__(f"refused{f' by {check}' if check else ''}: {reason}")
        self.reason, self.check = reason, check


@dataclass(frozen=True)
class Param:
    """One generation parameter: what a form field, a CLI option and a JSON-schema property need to know.

    ``kind``: int, float, str, bool, choice (one of ``choices``), strings (a list of str; a single str is taken as
    a list of one) or image (a file path, a PIL image or a tensor in [-1, 1]).
    """

    name: str
    kind: str
    default: Any = None
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    required: bool = False

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Param {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")

    def check(self, value: Any) -> Any:
        """``value`` converted to this parameter's kind, or a :class:`ParameterError` that names the parameter."""
        if value is None:
            if self.required:
                raise ParameterError(self.name, f"is required ({self.help or self.kind})")
            return None
        kind = self.kind
        if kind == "bool":
            if not isinstance(value, bool):
                raise ParameterError(self.name, f"must be true or false, got {value!r}")
            return value
        if kind in ("int", "float"):
            return self._check_number(value)
        if kind == "strings":
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not all(isinstance(v, (str, int)) for v in items):
                raise ParameterError(self.name, f"must be a list of strings, got {value!r}")
            return [str(v) for v in items]
        if kind == "image":
            return value  # the pipeline reads and checks it (size, channels), naming this parameter
        if not isinstance(value, str):
            raise ParameterError(self.name, f"must be a string, got {type(value).__name__}")
        if kind == "choice" and value not in (self.choices or ()):
            raise ParameterError(self.name, f"unknown {self.name} {value!r}; choose one of "
                                            f"{', '.join(self.choices or ())}")
        if self.maximum is not None and len(value) > self.maximum:
            raise ParameterError(self.name, f"is {len(value)} characters long; at most {int(self.maximum)} allowed")
        return value

    def _check_number(self, value: Any) -> int | float:
        integral = self.kind == "int"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integral and value != int(value)) \
                or not math.isfinite(value):
            raise ParameterError(self.name, f"must be {'an integer' if integral else 'a number'}, got {value!r}")
        value = int(value) if integral else float(value)
        if self.minimum is not None and value < self.minimum:
            raise ParameterError(self.name, f"must be >= {self.minimum:g}, got {value:g}")
        if self.maximum is not None and value > self.maximum:
            raise ParameterError(self.name, f"must be <= {self.maximum:g}, got {value:g}")
        return value

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def json_schema(self) -> dict[str, Any]:
        """This parameter as a JSON-schema property (the HTTP API's request schema)."""
        types = {"int": "integer", "float": "number", "str": "string", "bool": "boolean", "choice": "string",
                 "image": "string"}
        schema: dict[str, Any] = {"description": self.help}
        if self.kind == "strings":
            schema |= {"type": "array", "items": {"type": "string"}}
        else:
            schema["type"] = types[self.kind]
        if self.kind == "image":
            schema["format"] = "binary"
        if self.choices:
            schema["enum"] = list(self.choices)
        if self.default is not None:
            schema["default"] = self.default
        bounds = ("minLength", "maxLength") if self.kind == "str" else ("minimum", "maximum")
        for key, bound in zip(bounds, (self.minimum, self.maximum)):
            if bound is not None:
                schema[key] = bound
        return schema


@dataclass
class Generation:
    """What a pipeline generated: ``items`` (modality data: an image batch, a table, texts, ...), ``parameters``
    (the full reproducible record: resolved request, seed, model, sampler, version) and, outside that record, the
    wall time and notes of the checks that ran after generation (what they removed, and why)."""

    items: Any
    parameters: dict[str, Any]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


class StepReporter:
    """Turns a pipeline's per-step calls into ``progress(done, total)`` and honours ``cancel()`` at every step."""

    def __init__(self, total: int, progress: Progress | None = None, cancel: Cancel | None = None):
        self.total, self.progress, self.cancel, self.done = max(1, int(total)), progress, cancel, 0

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled(f"cancelled after {self.done} of {self.total} steps")

    def step(self, count: int = 1, *, total: int | None = None) -> None:
        """Count ``count`` finished steps (of ``total``, when the pipeline learns it late), report them, then stop
        here if cancelled."""
        self.total = max(1, int(total)) if total is not None else self.total
        self.done = min(self.total, self.done + count)
        if self.progress is not None:
            self.progress(self.done, self.total)
        self.check_cancel()


CheckBefore = Callable[["Pipeline", dict], None]  # raise Refused(reason) to refuse a request
CheckAfter = Callable[["Pipeline", Generation], Generation]  # return the generation, filtered, or raise Refused
_CHECKS: dict[str, list[tuple[Callable, tuple[str, ...] | None]]] = {"before": [], "after": []}


def add_check(when: str, check: Callable, *, modalities: tuple[str, ...] | None = None) -> Callable[[], None]:
    """Run ``check`` before (``check(pipeline, params)``) or after (``check(pipeline, generation) -> generation``)
    every generation of the named modalities (all when None). Returns a function that removes the check."""
    if when not in _CHECKS:
        raise ValueError(f"when must be 'before' or 'after', got {when!r}")
    entry = (check, tuple(modalities) if modalities is not None else None)
    _CHECKS[when].append(entry)
    return lambda: _CHECKS[when].remove(entry) if entry in _CHECKS[when] else None


def _checks(when: str, modality: str) -> list[Callable]:
    return [check for check, only in list(_CHECKS[when]) if only is None or modality in only]


def run_checks(when: str, pipeline: "Pipeline", subject):
    """Run the ``when`` checks of ``pipeline``'s modality on ``subject`` (the resolved params before, the
    :class:`Generation` after) and return what the after-checks made of it. :meth:`Pipeline.generate` calls this;
    a server calls it at submit time too, to refuse a request before queuing it."""
    for check in _checks(when, pipeline.modality):
        result = check(pipeline, subject)
        subject = result if when == "after" else subject
    return subject


class Pipeline:
    """Base of every modality's pipeline. Subclasses set ``modality`` and implement ``load``, ``parameters``,
    ``_generate`` and ``save_outputs``; :meth:`generate` adds parameter checking, the checks and the timing."""

    modality: ClassVar[str] = ""
    source: str = ""

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu", use_ema: bool = True) -> "Pipeline":
        raise NotImplementedError

    def parameters(self) -> list[Param]:
        """The parameters this model takes (they may depend on the model: classes, prompts, columns)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Model and parameters as plain JSON: for ``noisecraft info``, ``GET /v1/models`` and a web form."""
        return {"modality": self.modality, "model": self.source,
                "parameters": [param.to_dict() for param in self.parameters()]}

    def json_schema(self) -> dict[str, Any]:
        """The request's JSON schema (an object with one property per parameter)."""
        params = self.parameters()
        return {"type": "object", "additionalProperties": False,
                "properties": {p.name: p.json_schema() for p in params},
                "required": [p.name for p in params if p.required]}

    def check_params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """The request with defaults filled in and every value checked; unknown names are refused."""
        params = dict(params or {})
        declared = {p.name: p for p in self.parameters()}
        unknown = sorted(set(params) - set(declared))
        if unknown:
            raise ParameterError(unknown[0], f"is not a parameter of this {self.modality} model; it takes "
                                             f"{', '.join(declared)}")
        return {name: param.check(params.get(name, param.default)) for name, param in declared.items()}

    def generate(self, params: dict[str, Any] | None = None, *, seed: int = 0, progress: Progress | None = None,
                 cancel: Cancel | None = None) -> Generation:
        """Generate from ``params`` (see :meth:`parameters`) with ``seed``; ``progress(done, total)`` after each
        step; ``cancel()`` returning True stops at the next step with :class:`Cancelled`."""
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise ParameterError("seed", f"must be an integer in [0, 2^63), got {seed!r}")
        resolved = self.check_params(params)
        run_checks("before", self, resolved)
        start = time.perf_counter()
        generation = self._generate(resolved, seed=seed, progress=progress, cancel=cancel)
        generation.seconds = round(time.perf_counter() - start, 3)
        return run_checks("after", self, generation)

    def _generate(self, params: dict[str, Any], *, seed: int, progress: Progress | None,
                  cancel: Cancel | None) -> Generation:
        raise NotImplementedError

    def save_outputs(self, generation: Generation, out_dir: str | Path) -> list[Path]:
        """Write the items into ``out_dir``, each carrying ``generation.parameters``; returns the files written."""
        raise NotImplementedError
