"""``noisecraft likelihood MODEL DATA``: how well a model explains a data set, for every modality that can say.

The model folder's kind picks its modality in the registry; the modality's ``likelihood`` entry
(``score(model_dir, data, *, limit, batch_size, seed, device, **method options) -> dict``) computes the report:
image models their bits per dimension by the probability-flow ODE (``images/likelihood.py``), sequence models
(text, molecules) their masked-diffusion NELBO. An option the model's method does not take (``--steps`` for a text
model, ``--samples`` for an image model) is a one-line error rather than silently ignored.
"""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from noisecraft import registry

# CLI flag of each method option (the keyword the modality's score function takes).
METHOD_OPTIONS = {"steps": "--steps", "rtol": "--rtol", "hutchinson": "--hutchinson", "exact_trace": "--exact-trace",
                  "labels": "--labels/--no-labels", "samples": "--samples"}


def likelihood(
    model: Annotated[Path, typer.Argument(help="Model folder (run, export or checkpoint): an image model (bits per "
                                               "dimension) or a text / molecule model (masked-diffusion NELBO).")],
    data: Annotated[str, typer.Argument(help="Data to score. Images: what the image trainer accepts (digits:test, "
                                             "digits, shapes, an image folder), read at the model's size. Text: a "
                                             "held-out .txt file or folder, or 'default' (the held-out plays). "
                                             "Molecules: a SMILES / CSV file or a MOSES split (moses-test).")],
    batch: Annotated[int, typer.Option("--batch", help="Examples (images, windows, molecules) per batch.")] = 64,
    limit: Annotated[int, typer.Option("--limit", help="Score at most N examples: the first N images or "
                                                       "molecules, N evenly spread text windows.")] = 256,
    steps: Annotated[Optional[int], typer.Option(help="Images: fixed-step Heun on N steps (2N network calls; "
                                                      "biased on sharp data: for quick comparisons) instead of "
                                                      "adaptive RK45.")] = None,
    rtol: Annotated[Optional[float], typer.Option(help="Images: RK45 relative and absolute tolerance "
                                                       "(default 1e-5).")] = None,
    hutchinson: Annotated[Optional[int], typer.Option(help="Images: K Rademacher probes of Hutchinson's "
                                                           "divergence estimate (default 1).")] = None,
    exact_trace: Annotated[bool, typer.Option("--exact-trace", help="Images: the exact divergence (one backward "
                                                                    "pass per dimension: small images only).")] = False,
    labels: Annotated[Optional[bool], typer.Option("--labels/--no-labels", help="Images: condition a class-"
                                                   "conditional model on the data's labels, log p(x|y) (default: "
                                                   "when both have classes).")] = None,
    samples: Annotated[Optional[int], typer.Option(help="Text, molecules: Monte Carlo draws of the masking time "
                                                        "per example (default 4).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the dequantisation noise and probes (images) or of the masking "
                                           "draws (sequences): same seed, same numbers.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "auto",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the JSON report here.")] = None,
) -> None:
    """Likelihood of DATA under MODEL, printed as JSON: bits per dimension for image models (probability-flow ODE,
    uniform dequantisation of the 8-bit pixels), the masked-diffusion NELBO in bits per token / character /
    molecule for text and molecule models."""
    started = time.perf_counter()
    report = score(model, data, batch=batch, limit=limit, seed=seed, device=device, steps=steps, rtol=rtol,
                   hutchinson=hutchinson, exact_trace=exact_trace or None, labels=labels, samples=samples)
    text = json.dumps(report, indent=1, sort_keys=True)
    if out is not None:
        from noisecraft.training.checkpoint import atomic_write_bytes

        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, (text + "\n").encode("utf-8"))
    typer.echo(text)
    typer.echo(f"scored in {time.perf_counter() - started:.1f} s" + (f"; report: {out}" if out else ""), err=True)


def score(model: str | Path, data: str, *, batch: int = 64, limit: int | None = 256, seed: int = 0,
          device: str = "auto", **method_options) -> dict:
    """The report of :func:`likelihood` as a dict (method options left None are the modality's defaults). It
    holds no timing, so the same arguments give the same bytes."""
    for name, value in (("--batch", batch), ("--limit", limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not Path(model).exists():
        raise FileNotFoundError(f"model folder not found: {model}")
    modality, model_dir = registry.for_model_dir(model)
    if modality.likelihood is None:
        able = ", ".join(m.name for m in registry.modalities() if m.likelihood)
        raise ValueError(f"{model_dir} holds a {modality.name} model, which has no likelihood in noisecraft "
                         f"(likelihood scores {able} models)")
    scorer = modality.resolve("likelihood")
    accepted = inspect.signature(scorer).parameters
    given = {name: value for name, value in method_options.items() if value is not None}
    for name in given:
        if name not in accepted:
            raise ValueError(f"{METHOD_OPTIONS.get(name, name)} does not apply to {modality.name} models; drop it")
    return scorer(model_dir, data, limit=limit, batch_size=batch, seed=seed, device=device, **given)
