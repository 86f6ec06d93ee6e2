"""Installing a policy as the protocol's before/after checks (:func:`noisecraft.protocol.add_check`).

* before generation: every text parameter of the request (``Param`` kinds "str" and "strings", except the
  policy's ``text_params.exclude``) through the blocked terms and concepts; a match raises
  :class:`~noisecraft.protocol.Refused` naming the rule, its score and threshold. Pipelines without text
  parameters (class-conditional models, tables without ``where``) pass with nothing to check.
* after generation: the policy's output checks of the pipeline's modality; "refuse" raises Refused, "filter"
  removes the failing items (``generation.notes`` says which and why; Refused if none is left). The decisions of
  both are recorded in ``generation.parameters["safety"]``, so they are saved with the outputs.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any

from noisecraft.protocol import Generation, Refused, add_check
from noisecraft.safety.outputs import build_classifier
from noisecraft.safety.policy import Policy, load_policy, refusal
from noisecraft.safety.rules import Decision

ENV = "NOISECRAFT_SAFETY"
OFF = ("off", "0", "false", "no", "disabled")
CHECK = "safety"
EXEMPT_ATTRIBUTE = "_noisecraft_safety_exempt"


def _record(decisions: list[Decision]) -> list[dict[str, Any]]:
    """What is saved for one input or output: every refusing decision, and the closest concept when none refused
    (its score and threshold say how near it came)."""
    refused = [d for d in decisions if not d.allowed]
    kept = list(refused)
    concepts = [d for d in decisions if d.kind == "concept" and d.allowed]
    if concepts and not any(d.kind == "concept" for d in refused):
        kept.append(max(concepts, key=lambda d: d.score - d.threshold))
    kept += [d for d in decisions if d.allowed and d.kind == "output"]
    return [d.to_dict() for d in kept]


class Safety:
    """An installed policy: the checks registered with the protocol. ``disable()`` removes them; also a context
    manager (``with noisecraft.safety.enable(policy): ...``)."""

    def __init__(self, policy: Policy, modalities: tuple[str, ...] | None = None):
        self.policy = policy
        self._pending = threading.local()  # before-check decisions, read by the after-check of the same call
        self._classifiers: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()
        self._removers = [add_check("before", self.before, modalities=modalities),
                          add_check("after", self.after, modalities=modalities)]

    @property
    def enabled(self) -> bool:
        return bool(self._removers)

    def disable(self) -> None:
        global _ACTIVE
        for remove in self._removers:
            remove()
        self._removers = []
        if _ACTIVE is self:
            _ACTIVE = None

    def __enter__(self) -> "Safety":
        return self

    def __exit__(self, *exc) -> None:
        self.disable()

    # --- the checks ---

    def text_inputs(self, pipeline, params: dict[str, Any]) -> list[tuple[str, str]]:
        """(where, text) of every text parameter of the request that the policy checks."""
        inputs = []
        for param in pipeline.parameters():
            if param.kind not in ("str", "strings") or param.name in self.policy.exclude_params:
                continue
            value = params.get(param.name)
            if value is None or value == "" or value == []:
                continue
            if isinstance(value, str):
                inputs.append((param.name, value))
            else:
                inputs += [(f"{param.name}[{i}]", str(v)) for i, v in enumerate(value) if str(v).strip()]
        return inputs

    def before(self, pipeline, params: dict[str, Any]) -> None:
        self._pending.value = None
        if getattr(pipeline, EXEMPT_ATTRIBUTE, False):
            return
        inputs = self.text_inputs(pipeline, params)
        per_input = self.policy.check_texts([text for _, text in inputs], [where for where, _ in inputs])
        self._pending.value = (id(pipeline), [entry for decisions in per_input for entry in _record(decisions)])
        refused = refusal([d for decisions in per_input for d in decisions])
        if refused is not None:
            raise Refused(f"{refused.reason}; rephrase the request (safety policy {self.policy.name!r})",
                          check=CHECK)

    def _classifier(self, modality: str, index: int):
        with self._lock:
            key = (modality, index)
            if key not in self._classifiers:
                check = self.policy.outputs[modality][index]
                self._classifiers[key] = build_classifier(check.classifier, check.options)
            return self._classifiers[key]

    def after(self, pipeline, generation: Generation) -> Generation:
        pending = getattr(self._pending, "value", None)
        self._pending.value = None
        if getattr(pipeline, EXEMPT_ATTRIBUTE, False):
            return generation
        inputs = pending[1] if pending is not None and pending[0] == id(pipeline) else []
        items = generation.items
        positions = None  # original index of each remaining item, once a filter removed some
        outputs: list[dict[str, Any]] = []
        removed = False
        for index, check in enumerate(self.policy.outputs.get(pipeline.modality, [])):
            per_item = self._classifier(pipeline.modality, index)(self.policy, pipeline, items)
            count = len(per_item)
            positions = positions or list(range(count))
            per_item = [[dataclasses.replace(d, where=f"output {positions[i]}") for d in decisions]
                        for i, decisions in enumerate(per_item)]
            for decisions in per_item:
                outputs += _record(decisions)
            refused = [(i, r) for i, decisions in enumerate(per_item) if (r := refusal(decisions)) is not None]
            if not refused:
                continue
            if check.action == "refuse" or len(refused) == count:
                i, first = refused[0]
                more = f" ({len(refused)} of {count} outputs failed)" if count > 1 else ""
                raise Refused(f"{first.reason}{more}; nothing was saved (safety policy {self.policy.name!r})",
                              check=CHECK)
            bad = {i for i, _ in refused}
            keep = [i for i in range(count) if i not in bad]
            for i, reason in refused:
                generation.notes.append(f"safety: removed output {positions[i]}: {reason.reason}")
            items = _select(items, keep)
            removed = True
            positions = [positions[i] for i in keep]
        generation.items = items
        record: dict[str, Any] = {"policy": self.policy.identity(), "inputs": inputs}
        if outputs:
            record["outputs"] = outputs
        if removed:
            record["kept"] = positions  # original indices of the outputs that remain
        generation.parameters["safety"] = record
        return generation


def _select(items, keep: list[int]):
    """``items`` restricted to the indices ``keep`` (a tensor batch, a list or another sequence)."""
    try:
        import torch

        if isinstance(items, torch.Tensor):
            return items[torch.tensor(keep, dtype=torch.long, device=items.device)]
    except ImportError:  # pragma: no cover
        pass
    if hasattr(items, "iloc"):
        return items.iloc[keep]
    return type(items)(items[i] for i in keep) if isinstance(items, (list, tuple)) else [items[i] for i in keep]


_ACTIVE: Safety | None = None
_INSTALL_LOCK = threading.RLock()


def enable(policy: "str | os.PathLike | dict | Policy | None" = None, *,
           modalities: tuple[str, ...] | None = None) -> Safety:
    """Install ``policy`` (default: the shipped ``default_policy.json``) as before/after checks of every modality
    (or only ``modalities``); replaces a policy enabled earlier. Returns the handle (``.disable()``)."""
    global _ACTIVE
    loaded = load_policy(policy)
    with _INSTALL_LOCK:
        if _ACTIVE is not None:
            _ACTIVE.disable()
        _ACTIVE = Safety(loaded, modalities)
        return _ACTIVE


def disable() -> None:
    """Remove the installed policy's checks (nothing happens if none is installed)."""
    with _INSTALL_LOCK:
        if _ACTIVE is not None:
            _ACTIVE.disable()


def active() -> Safety | None:
    """The installed policy's handle, or None."""
    return _ACTIVE


def is_enabled() -> bool:
    return _ACTIVE is not None and _ACTIVE.enabled


def setting() -> str | None:
    """What ``NOISECRAFT_SAFETY`` asks for: None (off), "default", or a policy file's path."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in OFF:
        return None
    if value.lower() in ("", "on", "1", "true", "yes", "default"):
        return "default"
    return value


def ensure_enabled() -> Safety | None:
    """Enable the policy the environment asks for, once (idempotent): ``NOISECRAFT_SAFETY`` unset or "on" -> the
    default policy; "off" (or 0/false/no) -> nothing (returns None); a path -> that policy file. A policy enabled
    explicitly before (:func:`enable`) is kept."""
    with _INSTALL_LOCK:
        wanted = setting()
        if wanted is None:
            return None
        if _ACTIVE is not None:
            return _ACTIVE
        return enable(None if wanted == "default" else wanted)


def exempt(pipeline, exempt: bool = True):
    """Exclude one loaded pipeline from the checks (``noisecraft.load(path, safety=False)``); returns it."""
    setattr(pipeline, EXEMPT_ATTRIBUTE, bool(exempt))
    return pipeline
