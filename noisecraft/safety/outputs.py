"""Output checks per modality: a registry of output classifiers, named in a policy's ``outputs``.

A classifier is registered with :func:`register_output_classifier` as ``factory(options) -> classify`` where
``classify(policy, pipeline, items) -> [[Decision, ...] per item]``; ``options`` are the check's keys in the policy
besides ``classifier`` and ``action`` (unknown options should raise ``ValueError``, which names them). Shipped:

* ``text_rules`` (text): the policy's blocked terms and concepts on each generated text (``terms``/``concepts``:
  true/false).
* ``shapes`` (image): the shapes-world analyzer (:func:`noisecraft.shapes.analyzer.analyze`) finds the objects of
  each image; a deployment forbids colours, shapes or sizes (``forbid_colours: ["purple"]``, ``forbid_shapes``,
  ``forbid_sizes``) or more than ``max_objects`` objects. Images that are not RGB are not applicable (allowed, and
  the decision says so).
* ``molecule_filters`` (molecules): the hook for RDKit FilterCatalog (PAINS, Brenk) and forbidden SMARTS. It comes
  with the molecules modality; until then a policy naming it is refused at load time with that explanation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from noisecraft.safety.rules import Decision, PolicyError

Classify = Callable[[Any, Any, Any], list[list[Decision]]]  # (policy, pipeline, items) -> decisions per item


@dataclass(frozen=True)
class OutputClassifier:
    name: str
    factory: Callable[[dict[str, Any]], Classify]
    summary: str = ""


OUTPUT_CLASSIFIERS: dict[str, OutputClassifier] = {}


def register_output_classifier(name: str, factory: Callable[[dict[str, Any]], Classify], summary: str = "", *,
                               replace: bool = False) -> OutputClassifier:
    """Make ``name`` usable as ``{"classifier": name, ...}`` in a policy's ``outputs``."""
    if name in OUTPUT_CLASSIFIERS and not replace:
        raise ValueError(f"an output classifier named {name!r} is already registered")
    OUTPUT_CLASSIFIERS[name] = OutputClassifier(name, factory, summary)
    return OUTPUT_CLASSIFIERS[name]


def build_classifier(name: str, options: dict[str, Any]) -> Classify:
    if name not in OUTPUT_CLASSIFIERS:
        raise ValueError(f"unknown output classifier {name!r}; registered: {', '.join(sorted(OUTPUT_CLASSIFIERS))}")
    return OUTPUT_CLASSIFIERS[name].factory(dict(options))


def validate_outputs(policy) -> None:
    """Build every output check of ``policy`` once, so that a bad classifier name or option fails at load time."""

    for modality, checks in policy.outputs.items():
        for i, check in enumerate(checks):
            try:
                build_classifier(check.classifier, check.options)
            except (ValueError, ImportError, NotImplementedError) as error:
                raise PolicyError(f"{policy.source or 'policy'}: outputs[{modality!r}][{i}]: {error}") from error


def _take(options: dict[str, Any], allowed: dict[str, Any], classifier: str) -> dict[str, Any]:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"the {classifier} classifier has no option {unknown[0]!r}; options: "
                         f"{', '.join(sorted(allowed))}")
    return {key: options.get(key, default) for key, default in allowed.items()}


# --- text ---


def _text_rules(options: dict[str, Any]) -> Classify:
    opts = _take(options, {"terms": True, "concepts": True, "name": "text_rules"}, "text_rules")

    def classify(policy, pipeline, items) -> list[list[Decision]]:
        texts = [str(item) for item in items]
        return policy.check_texts(texts, [f"output {i}" for i in range(len(texts))], terms=opts["terms"],
                                  concepts=opts["concepts"])

    return classify


# --- images: the shapes world ---


def _shapes(options: dict[str, Any]) -> Classify:
    from noisecraft.shapes.world import COLOURS, SHAPES, SIZES

    opts = _take(options, {"forbid_colours": [], "forbid_shapes": [], "forbid_sizes": [], "max_objects": None,
                           "name": "shapes"}, "shapes")
    for key, known in (("forbid_colours", COLOURS), ("forbid_shapes", SHAPES), ("forbid_sizes", tuple(SIZES))):
        bad = [v for v in opts[key] if v not in known]
        if bad:
            raise ValueError(f"shapes: {key} has {bad[0]!r}, which is not one of {', '.join(known)}")
    if opts["max_objects"] is not None and (not isinstance(opts["max_objects"], int) or opts["max_objects"] < 0):
        raise ValueError(f"shapes: max_objects must be a non-negative integer, got {opts['max_objects']!r}")
    if not (opts["forbid_colours"] or opts["forbid_shapes"] or opts["forbid_sizes"]
            or opts["max_objects"] is not None):
        raise ValueError("shapes: give at least one of forbid_colours, forbid_shapes, forbid_sizes, max_objects")
    name = str(opts["name"])

    def classify(policy, pipeline, items) -> list[list[Decision]]:
        from noisecraft.shapes.analyzer import analyze

        decisions = []
        for i, image in enumerate(items):
            where = f"output {i}"
            if getattr(image, "ndim", 0) != 3 or image.shape[0] != 3:
                decisions.append([Decision(True, name, "output", 0, 1, where=where,
                                           detail=f"not applicable: not an RGB image (shape "
                                                  f"{tuple(getattr(image, 'shape', ()))})")])
                continue
            objects = analyze(image)
            row = []
            for key, attribute in (("forbid_colours", "colour"), ("forbid_shapes", "shape"),
                                   ("forbid_sizes", "size")):
                if not opts[key]:
                    continue
                found = [o for o in objects if getattr(o, attribute) in opts[key]]
                described = ", ".join(f"a {o.size} {o.colour} {o.shape}" for o in found)
                row.append(Decision(not found, name, "output", len(found), 1, matched=described, where=where,
                                    detail=(f"{len(found)} object(s) of forbidden {attribute} "
                                            f"({'/'.join(opts[key])}): {described}" if found else
                                            f"no object of forbidden {attribute} ({'/'.join(opts[key])})")))
            if opts["max_objects"] is not None:
                limit = opts["max_objects"]
                row.append(Decision(len(objects) <= limit, name, "output", len(objects), limit + 1,
                                    matched=f"{len(objects)} objects", where=where,
                                    detail=f"{len(objects)} objects, at most {limit} allowed"))
            decisions.append(row)
        return decisions

    return classify


# --- molecules: the hook ---


def _molecule_filters(options: dict[str, Any]) -> Classify:
    _take(options, {"catalogs": ["PAINS", "BRENK"], "forbidden_smarts": [], "name": "molecule_filters"},
          "molecule_filters")
    try:
        import rdkit  # noqa: F401
    except ImportError as error:
        raise ImportError("molecule_filters (RDKit FilterCatalog PAINS/Brenk and forbidden SMARTS) needs RDKit; it "
                          "comes with the molecules modality") from error
    raise NotImplementedError("molecule_filters is a hook: the molecules modality registers its implementation "
                              "with register_output_classifier('molecule_filters', ..., replace=True)")


register_output_classifier("text_rules", _text_rules, "the policy's terms and concepts on generated text")
register_output_classifier("shapes", _shapes, "shapes-world analyzer: forbidden colours/shapes/sizes, max objects")
register_output_classifier("molecule_filters", _molecule_filters, "hook: RDKit PAINS/Brenk and forbidden SMARTS")
