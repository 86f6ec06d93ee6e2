"""``MoleculePipeline``: a trained molecule model folder behind the pipeline protocol (noisecraft.protocol).

A request: ``{"n": 100, "targets": ["qed=0.9", "logp=2"], "guidance": 2, "contains": "c1ccccc1"}``.

- ``targets``: property values the molecules should have (NAME=VALUE, for properties the model was trained on);
  the others are left free. A value outside the training range is allowed but warned about (the range is named).
- ``guidance``: classifier-free guidance weight w (1: the conditional model; > 1 pushes harder towards the targets;
  needs a target).
- ``contains``: a SMARTS substructure every returned molecule must contain, by rejection: batches of n are drawn
  (at most ``tries`` batches) and the first n matching molecules kept; the record says how many were drawn and how
  many matched (fewer than n when the tries run out).
- ``scaffold``: scaffold decoration by infill (:mod:`.scaffold`): a SMILES with attachment points ``*`` whose
  tokens are kept while the model fills in 1..``decoration_size`` tokens at each ``*``; rows say whether the
  molecule contains the scaffold's core and the record counts the successes.
- ``forbid``: SMARTS substructures named in a ``forbidden`` column when present; with PAINS / Brenk alerts they flag
  a molecule. ``drop_flagged``: flagged (and invalid) samples are rejected like ``contains``; the record counts them.

Items: one dict per molecule (``smiles`` canonical, or empty with ``reason``; ``generated`` the raw sampled string;
the computed properties; PAINS / Brenk alerts). ``save_outputs`` writes ``molecules.csv``, ``molecules.json``
(the parameters) and ``molecules.png`` (a grid of the first valid molecules drawn by RDKit, properties as legends).
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from noisecraft import __version__
from noisecraft.protocol import Generation, Param, ParameterError, Pipeline, StepReporter
from noisecraft.sequence.folder import load_sequence_folder
from noisecraft.training.checkpoint import atomic_write_bytes

from .filters import alerts, flagged, parse_forbidden
from .scaffold import BannedTokens, decorate, plan_scaffold
from .properties import PROPERTIES, REPORTED, Normalizer, parse_target
from .tokenizers import TOKENIZER_FILE, MoleculeTokenizer, load_tokenizer

MODEL_KIND = "molecules"
MAX_N = 10_000
MAX_STEPS = 4096
MAX_TRIES = 100
GRID = 12  # molecules drawn in the PNG
OUTPUT_STEM = "molecules"





def analyse(generated: str, smiles: str, names: list[str], pattern=None, forbidden=()) -> dict[str, Any]:
    """One output row: canonical SMILES or the reason it is not a molecule, properties and alerts (PAINS, Brenk and
    the ``forbidden`` SMARTS hit)."""
    from rdkit import Chem

    from .data import parse_smiles

    row: dict[str, Any] = {"smiles": "", "reason": "", "generated": generated}
    empty = "empty: the model ended the molecule at once" if not generated else \
        "the string decodes to no atom (e.g. SELFIES of ring or branch symbols only)"
    mol, reason = parse_smiles(smiles) if smiles else (None, empty)
    if mol is None:
        row["reason"] = reason
        return row
    row["smiles"] = Chem.MolToSmiles(mol)
    for name in names:
        row[name] = round(float(PROPERTIES[name].compute(mol)), 6)
    row |= alerts(mol, forbidden)
    if pattern is not None:
        row["contains"] = bool(mol.HasSubstructMatch(pattern))
    return row


class MoleculePipeline(Pipeline):
    """A molecule diffusion model (network + tokenizer + property normalisation); ``noisecraft.load`` returns one."""

    modality = "molecules"

    def __init__(self, model: torch.nn.Module, spec: Any, tokenizer: MoleculeTokenizer, model_config: dict, *,
                 source: str = ""):
        self.model, self.spec, self.tokenizer = model.eval(), spec, tokenizer
        self.model_config, self.source = model_config, source
        props = (spec.extra or {}).get("properties")
        self.normalizer = Normalizer.from_dict(props) if props else None

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu", use_ema: bool = True) -> "MoleculePipeline":
        model, spec, tokenizer, model_config, model_dir = load_sequence_folder(
            path, kind=MODEL_KIND, what="molecule", fit_command="noisecraft molecules fit", tokenizer_file=TOKENIZER_FILE,
            load_tokenizer=load_tokenizer, device=device, use_ema=use_ema)
        return cls(model, spec, tokenizer, model_config, source=str(model_dir))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def property_names(self) -> list[str]:
        return list(self.normalizer.names) if self.normalizer else []

    @property
    def reported(self) -> list[str]:
        """The properties computed for every generated molecule: the model's, then QED, logP, SA, MW."""
        return self.property_names + [name for name in REPORTED if name not in self.property_names]

    # --- the pipeline protocol ---

    def parameters(self) -> list[Param]:
        length = int(self.spec.max_length)
        known = ", ".join(f"{n} ({lo:.3g}..{hi:.3g})" for n in self.property_names
                          for lo, hi in [self.normalizer.range(n)]) or "none: this model is unconditional"
        return [
            Param("n", "int", 10, "Number of molecules to generate.", 1, MAX_N),
            Param("steps", "int", length, f"Denoising steps (default: the model's length, {length} tokens; fewer "
                                          "is faster, coarser).", 1, MAX_STEPS),
            Param("targets", "strings", [], f"Property targets NAME=VALUE, e.g. qed=0.8 (trained on: {known}).",
                  None, None),
            Param("guidance", "float", 1.0, "Classifier-free guidance weight towards the targets (1: the plain "
                                            "conditional model; 2-4 pushes harder; needs a target).", 0, 20),
            Param("contains", "str", "", "SMARTS substructure every molecule must contain (by rejection: batches "
                                         "are drawn until n match or the tries run out).", None, 1000),
            Param("scaffold", "str", "", "Scaffold decoration: a SMILES with attachment points *, e.g. "
                                         "c1ccc(*)cc1; each * is filled in by the model (SMILES models).", None,
                  1000),
            Param("decoration_size", "int", 8, "With scaffold: at most this many tokens per attachment point (each "
                                               "sample draws its sizes).", 1, 64),
            Param("forbid", "strings", [], "SMARTS substructures no molecule should contain: each hit is named in "
                                           "the 'forbidden' column and flags the molecule.", None, None),
            Param("drop_flagged", "bool", False, "Drop molecules with a PAINS / Brenk alert or a forbidden "
                                                 "substructure (by rejection, like contains; counted).", None, None),
            Param("tries", "int", 10, "With contains or drop_flagged: at most this many batches of n are drawn.", 1,
                  MAX_TRIES),
            Param("temperature", "float", 1.0, "Sampling temperature (0: always the most probable token).", 0, 5),
            Param("top_p", "float", 1.0, "Nucleus sampling: draw only from the most probable tokens making up this "
                                         "probability mass (1: all; must be > 0).", 0, 1),
        ]

    def _plan(self, params: dict[str, Any]) -> dict[str, Any]:
        """Checked targets (name -> value), their warnings, the condition tensors and the SMARTS pattern."""
        if not params["top_p"] > 0:
            raise ParameterError("top_p", f"must be > 0 (a nucleus holds at least the most probable token), got "
                                          f"{params['top_p']:g}")
        targets: dict[str, float] = {}
        for text in params["targets"] or []:
            try:
                name, value = parse_target(text, self.property_names)
            except ValueError as error:
                raise ParameterError("targets", str(error)) from None
            if name in targets:
                raise ParameterError("targets", f"{name!r} is targeted twice")
            targets[name] = value
        notes = []
        for name, value in targets.items():
            low, high = self.normalizer.range(name)
            if not low <= value <= high:
                notes.append(f"target {name}={value:g} is outside the training range of {name} "
                             f"[{low:.4g}, {high:.4g}]; expect it to be missed")
        if params["guidance"] != 1 and not targets:
            raise ParameterError("guidance", "guidance pushes towards targets; give at least one target "
                                             "(NAME=VALUE) or leave guidance at 1")
        cond = None
        if targets:
            k = len(self.property_names)
            vector = torch.zeros(1, 2 * k)
            for name, value in targets.items():
                i = self.property_names.index(name)
                vector[0, i] = self.normalizer.normalise(name, value)
                vector[0, k + i] = 1.0
            cond = {"cond": vector, "cond_mask": torch.ones(1, dtype=torch.bool)}
        pattern = None
        if params["contains"]:
            from rdkit import Chem

            from .data import quiet_rdkit

            quiet_rdkit()
            pattern = Chem.MolFromSmarts(params["contains"])
            if pattern is None:
                raise ParameterError("contains", f"{params['contains']!r} is not valid SMARTS (e.g. c1ccccc1 for a "
                                                 f"benzene ring, [NX3][CX3]=O for an amide)")
        try:
            forbidden = parse_forbidden(list(params["forbid"] or []))
        except ValueError as error:
            raise ParameterError("forbid", str(error)) from None
        scaffold = None
        if params["scaffold"]:
            try:
                scaffold = plan_scaffold(params["scaffold"], self.tokenizer, int(self.spec.max_length),
                                         params["decoration_size"])
            except ValueError as error:
                raise ParameterError("scaffold", str(error)) from None
        return {"targets": targets, "notes": notes, "cond": cond, "pattern": pattern, "forbidden": forbidden,
                "scaffold": scaffold}

    def _generate(self, params: dict[str, Any], *, seed: int, progress, cancel) -> Generation:
        from rdkit import Chem

        from noisecraft.sequence.sampling import generate_tokens

        plan = self._plan(params)
        for note in plan["notes"]:
            warnings.warn(note, stacklevel=3)
        n, steps, pattern, drop = params["n"], params["steps"], plan["pattern"], params["drop_flagged"]
        rejecting = pattern is not None or drop
        tries = params["tries"] if rejecting else 1
        reporter = StepReporter(steps, progress, cancel)
        reporter.check_cancel()
        rows: list[dict[str, Any]] = []
        drawn = matched = dropped = invalid = 0
        length = int(self.spec.max_length)
        ids = {"mask": self.spec.mask_id, "eos": self.tokenizer.eos_id, "pad": self.tokenizer.pad_id}
        scaffold_counts = {"valid": 0, "kept": 0}
        ends = [ids["eos"], ids["pad"]]
        models = {False: BannedTokens(self.model, ends, slice(0, 1)), True: BannedTokens(self.model, ends)}
        for attempt in range(tries):
            offset = attempt * steps
            round_seed = seed if attempt == 0 else (seed * 1_000_003 + attempt) % 2**63

            def draw(count, template=None, draw_seed=round_seed, o=offset):
                return generate_tokens(
                    models[template is not None], count, length, steps=steps, seed=draw_seed, template=template,
                    temperature=params["temperature"], top_p=params["top_p"], guidance=params["guidance"],
                    cond=plan["cond"], device=self.device,
                    progress=lambda done, total: reporter.step(max(0, o + done - reporter.done), total=o + total))

            if plan["scaffold"] is None:
                tokens = draw(n)
            else:  # each group of equal decoration sizes restarts the step count of this attempt
                tokens = decorate(draw, plan["scaffold"], n, length, round_seed, ids)
            for ids_row in tokens.cpu().tolist():
                drawn += 1
                text = self.tokenizer.decode_text(ids_row)
                row = analyse(text, self.tokenizer.to_smiles(text), self.reported, pattern, plan["forbidden"])
                if plan["scaffold"] is not None:
                    scaffold_counts["valid"] += bool(row["smiles"])
                    row["scaffold"] = bool(row["smiles"]) and Chem.MolFromSmiles(row["smiles"]).HasSubstructMatch(
                        plan["scaffold"].core)
                    scaffold_counts["kept"] += row["scaffold"]
                if pattern is not None and not row.get("contains"):
                    continue
                matched += 1
                if drop and (flagged(row) or not row["smiles"]):
                    dropped += bool(row["smiles"])
                    invalid += not row["smiles"]
                    continue
                rows.append(row)
            if len(rows) >= n:
                break
        rows = rows[:n]
        for index, row in enumerate(rows):
            row["index"] = index
            for name, value in plan["targets"].items():
                row[f"target_{name}"] = value
        record = {"model": self.source, "modality": self.modality, **params, "seed": seed,
                  "representation": self.tokenizer.representation, "properties": self.property_names,
                  "warnings": plan["notes"], "noisecraft": __version__,
                  "valid": sum(1 for row in rows if row["smiles"])}
        if pattern is not None:
            record["contains_report"] = {"drawn": drawn, "tries": attempt + 1, "matched": matched,
                                         "requested": n}
        if plan["scaffold"] is not None:  # success: a valid molecule that contains the scaffold's core
            record["scaffold_report"] = {"drawn": drawn, **scaffold_counts,
                                         "success_rate": scaffold_counts["kept"] / drawn}
        if drop:  # flagged: valid molecules with an alert; invalid samples are dropped too, not counted as flagged
            record["flagged_report"] = {"drawn": drawn, "tries": attempt + 1, "dropped_flagged": dropped,
                                        "dropped_invalid": invalid, "kept": len(rows), "requested": n}
        if rejecting and len(rows) < n:
            wanted = " and ".join(([f"contain {params['contains']!r}"] if pattern is not None else [])
                                  + (["pass the filters"] if drop else []))
            message = (f"only {len(rows)} of {n} molecules {wanted} after {drawn} draws ({attempt + 1} tries); "
                       f"raise tries or loosen the pattern")
            record["warnings"] = plan["notes"] + [message]
            warnings.warn(message, stacklevel=3)
        return Generation(rows, record)

    def columns(self, generation: Generation) -> list[str]:
        targets = [f"target_{name}" for name in self.property_names
                   if any(f"target_{name}" in row for row in generation.items)]
        extra = ["forbidden"] if generation.parameters.get("forbid") else []
        extra += ["scaffold"] if generation.parameters.get("scaffold") else []
        extra += ["contains"] if generation.parameters.get("contains") else []
        return ["index", "smiles", "reason", *self.reported, *targets, "pains", "brenk", *extra, "generated"]

    def save_outputs(self, generation: Generation, out_dir: str | Path) -> list[Path]:
        """``molecules.csv`` (one row per molecule), ``molecules.json`` (the parameters) and, when a molecule is
        valid, ``molecules.png`` (a grid of the first valid ones)."""
        out_dir = Path(out_dir)
        return write_outputs(generation, out_dir / f"{OUTPUT_STEM}.csv", self.columns(generation), self.reported)


def write_outputs(generation: Generation, csv_path: Path, columns: list[str], properties: list[str]) -> list[Path]:
    """The CSV at ``csv_path``, the parameters beside it (``.json``) and the PNG grid (``.png``), atomically."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in generation.items:
        writer.writerow({key: ("" if row.get(key) is None else row.get(key, "")) for key in columns})
    atomic_write_bytes(csv_path, buffer.getvalue().encode("utf-8"))
    json_path = csv_path.with_suffix(".json")
    atomic_write_bytes(json_path, (json.dumps(generation.parameters, indent=1, sort_keys=True) + "\n").encode())
    files = [csv_path, json_path]
    png = grid_png(generation.items, properties[:3])
    if png is not None:
        png_path = csv_path.with_suffix(".png")
        atomic_write_bytes(png_path, png)
        files.append(png_path)
    return files


def grid_png(rows: list[dict[str, Any]], properties: list[str], count: int = GRID) -> bytes | None:
    """PNG bytes of the first ``count`` valid molecules (RDKit ``MolsToGridImage``, properties as legends)."""
    from rdkit import Chem
    from rdkit.Chem import Draw

    valid = [row for row in rows if row.get("smiles")][:count]
    if not valid:
        return None
    mols = [Chem.MolFromSmiles(row["smiles"]) for row in valid]
    legends = [" ".join(f"{name}={row[name]:.2f}" for name in properties if name in row) for row in valid]
    image = Draw.MolsToGridImage(mols, molsPerRow=4, subImgSize=(250, 200), legends=legends)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
