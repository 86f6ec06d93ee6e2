"""``noisecraft molecules fit | sample | evaluate``: thin commands over ``noisecraft.molecules``.

User mistakes are raised as ValueError / FileNotFoundError with a one-line message naming the file, option or
value; the main CLI prints them as one ``error:`` line.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from noisecraft.cli_common import step_progress_bar

app = typer.Typer(help="Molecules by masked diffusion over SMILES or SELFIES: fit a model to a SMILES file (default: "
                       "20k molecules of MOSES), sample molecules with property targets, guidance and required "
                       "substructures, evaluate with the MOSES metrics.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.command()
def fit(
    smiles_file: Annotated[str, typer.Argument(help="Training molecules: a SMILES file (one per line, optional "
                                                    "header), a CSV with a SMILES column, or 'moses' (20k molecules "
                                                    "of the MOSES training split; 'moses:N' for N).")] = "moses",
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to create (or to continue with "
                                                          "--resume).")] = ...,
    properties: Annotated[str, typer.Option(help="Comma-separated properties to condition on, e.g. qed,logp,sa "
                                                 "(known: qed, logp, sa, mw, tpsa, hbd, hba, rotb, rings); empty: "
                                                 "an unconditional model.")] = "",
    representation: Annotated[str, typer.Option(help="smiles (atom-level SMILES tokens) or selfies (SELFIES "
                                                     "symbols: every sample decodes to a molecule).")] = "smiles",
    column: Annotated[Optional[str], typer.Option(help="The SMILES column of a CSV file (default: the column named "
                                                       "smiles, any case).")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Wall-clock training budget in minutes.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps (default 20000 unless --minutes is "
                                                      "given).")] = None,
    preset: Annotated[str, typer.Option(help="Network size: tiny (tests), small (~3M parameters, CPU) or base "
                                             "(~85M, GPU).")] = "small",
    batch_size: Annotated[int, typer.Option(help="Molecules per optimizer step.")] = 128,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, linear warm-up).")] = 3e-4,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, data order and masking.")] = 0,
    config: Annotated[Optional[Path], typer.Option(help="JSON file of further options (e.g. {\"max_length\": 80, "
                                                        "\"net\": {...}, \"train\": {\"bf16\": true}}); the "
                                                        "command-line options win.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT from its latest checkpoint (same data and "
                                              "settings; a larger --steps trains longer).")] = False,
) -> None:
    """Fit a masked-diffusion molecule model to SMILES_FILE and save it (tokenizer, weights, checkpoints) to OUT."""
    from noisecraft.cli_common import load_json
    from noisecraft.molecules.data import read_molecules
    from noisecraft.molecules.training import check_config, train_on_molecules

    options = load_json(config) if config is not None else {}
    options |= {"data": smiles_file, "out_dir": str(out), "properties": properties,
                "representation": representation, "column": column, "minutes": minutes, "steps": steps,
                "preset": preset, "batch_size": batch_size, "lr": lr, "seed": seed}
    options = check_config(options)
    molecules = read_molecules(options["data"], column=options["column"])
    typer.echo(f"{len(molecules)} molecules from {smiles_file}")
    if molecules.report:
        typer.secho(f"warning: {molecules.report}", err=True, fg=typer.colors.YELLOW)
    result = train_on_molecules(molecules, options, resume=resume)
    stopped = f" (stopped: {result.reason}; continue with --resume)" if result.interrupted else ""
    typer.echo(f"trained {result.step} steps{stopped}; model saved to {out}")


@app.command()
def sample(
    model: Annotated[Path, typer.Argument(help="Model folder written by `noisecraft molecules fit` (or one of its "
                                               "checkpoints).")],
    n: Annotated[int, typer.Option("-n", "--num", help="Number of molecules (1 to 10000).")] = 10,
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV to write (one row per molecule: SMILES or the "
                                                          "reason it failed, properties, PAINS/Brenk alerts, "
                                                          "forbidden hits); the "
                                                          "parameters go to OUT.json, a picture grid to "
                                                          "OUT.png.")] = ...,
    target: Annotated[Optional[list[str]], typer.Option(help="Property target NAME=VALUE (repeatable), e.g. "
                                                             "--target qed=0.9 --target logp=2.")] = None,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance weight towards the targets (1: plain "
                                                 "conditional; 2-4 push harder).")] = 1.0,
    contains: Annotated[str, typer.Option(help="SMARTS substructure every molecule must contain (rejection "
                                               "sampling), e.g. 'c1ccccc1'.")] = "",
    scaffold: Annotated[str, typer.Option(help="Scaffold decoration: a SMILES with attachment points *, e.g. "
                                               "'c1ccc(*)cc1'; the model fills in each * (by infill; SMILES models "
                                               "only). The CSV's scaffold column and the JSON's success rate say "
                                               "how many kept it.")] = "",
    decoration_size: Annotated[int, typer.Option(help="With --scaffold: at most this many tokens per attachment "
                                                      "point.")] = 8,
    forbid: Annotated[Optional[list[str]], typer.Option(help="SMARTS substructure no molecule should contain "
                                                             "(repeatable); hits are named in the 'forbidden' "
                                                             "column and flag the molecule, like PAINS / Brenk "
                                                             "alerts.")] = None,
    drop_flagged: Annotated[bool, typer.Option(help="Drop molecules with a PAINS / Brenk alert or a forbidden "
                                                    "substructure (and invalid samples), drawing more batches "
                                                    "like --contains; the JSON counts them.")] = False,
    tries: Annotated[int, typer.Option(help="With --contains or --drop-flagged: at most this many batches of N "
                                            "are drawn.")] = 10,
    steps: Annotated[Optional[int], typer.Option(help="Denoising steps (default: the model's length in "
                                                      "tokens).")] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0: most probable token).")] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass (1: off).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed: the same seed gives the same molecules.")] = 0,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "auto",
) -> None:
    """Generate N molecules into a CSV (with its parameters as JSON and a PNG grid beside it)."""
    from noisecraft.molecules.pipeline import MoleculePipeline, write_outputs

    pipeline = MoleculePipeline.load(model, device=device)
    request = {"n": n, "targets": list(target or []), "guidance": guidance, "contains": contains, "tries": tries,
               "forbid": list(forbid or []), "drop_flagged": drop_flagged,
               "scaffold": scaffold, "decoration_size": decoration_size,
               "temperature": temperature, "top_p": top_p} | ({"steps": steps} if steps is not None else {})
    generation = pipeline.generate(request, seed=seed, progress=step_progress_bar("sampling"))
    files = write_outputs(generation, out, pipeline.columns(generation), pipeline.reported)
    valid = generation.parameters["valid"]
    dropped = generation.parameters.get("flagged_report", {}).get("dropped_flagged")
    dropped = f"; {dropped} flagged molecules dropped" if dropped is not None else ""
    if "scaffold_report" in generation.parameters:
        report = generation.parameters["scaffold_report"]
        dropped += f"; {report['kept']} keep the scaffold ({report['success_rate']:.0%})"
    typer.echo(f"wrote {len(generation.items)} molecules ({valid} valid{dropped}) to {', '.join(map(str, files))} "
               f"({generation.seconds:.1f} s)")


def read_generated(path: Path) -> list[dict]:
    """Rows of a generated-molecules file: a CSV with a ``smiles`` column (``sample``'s output; an empty cell is a
    failed sample) or a plain file of one SMILES per line (every line counts, an unreadable one as invalid)."""
    if not path.is_file():
        raise FileNotFoundError(f"generated molecules not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        columns = {name.lower(): name for name in reader.fieldnames or []}
        if "smiles" not in columns:
            raise ValueError(f"{path} has no smiles column (columns: {', '.join(reader.fieldnames or [])})")
        rows = [dict(row, smiles=row[columns["smiles"]] or "") for row in reader]
    else:
        lines = text.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        if lines and lines[0].strip().lower() in ("smiles", "canonical_smiles"):
            lines = lines[1:]
        rows = [{"smiles": (line.split() or [""])[0]} for line in lines]
    if not rows:
        raise ValueError(f"{path} holds no generated molecule")
    return rows


@app.command()
def evaluate(
    generated: Annotated[Path, typer.Argument(help="Generated molecules: the CSV of `sample` or a file of one "
                                                   "SMILES per line.")],
    train: Annotated[str, typer.Option(help="Training molecules (a SMILES / CSV file, or moses / moses:N): "
                                            "novelty, and the reference when no --test is given.")] = ...,
    test: Annotated[Optional[str], typer.Option(help="Test molecules for SNN, Frag, Scaf and FCD (a file, or "
                                                     "moses-test / moses-test:N).")] = None,
    column: Annotated[Optional[str], typer.Option(help="SMILES column of CSV train / test files.")] = None,
    fcd: Annotated[bool, typer.Option(help="Compute the Frechet ChemNet Distance (needs fcd_torch; slow on a CPU "
                                           "for large sets).")] = True,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the report as JSON here.")] = None,
    device: Annotated[str, typer.Option(help="Device of the FCD's ChemNet: cpu or cuda.")] = "cpu",
) -> None:
    """MOSES metrics (validity, unique@1k/10k, novelty, IntDiv1/2, SNN, Frag, Scaf, FCD), targeting metrics (MAE,
    hit rate per target column) and GenMol quality; printed and optionally written as JSON."""
    from noisecraft.molecules.data import read_molecules
    from noisecraft.molecules.metrics import distribution_metrics, targeting_metrics
    from noisecraft.training.checkpoint import atomic_write_bytes

    rows = read_generated(generated)
    gen = [row["smiles"] for row in rows]
    train_set = read_molecules(train, column=column).smiles
    test_set = read_molecules(test, column=column).smiles if test else None
    report = {"generated": str(generated), "train": train, "test": test,
              **distribution_metrics(gen, train_set, test_set, use_fcd=fcd, device=device),
              "targeting": targeting_metrics(rows)}
    text = json.dumps(report, indent=1, sort_keys=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out, (text + "\n").encode("utf-8"))
    typer.echo(text)
