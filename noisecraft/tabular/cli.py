"""``noisecraft tabular fit | sample | evaluate``: thin commands over the Python API in ``noisecraft.tabular``.

Errors are raised as ValueError / FileNotFoundError with a message naming the file, line, column or value; the main
CLI prints them as one line. Data warnings (dropped or excluded columns) are printed as ``warning: ...`` lines.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="Synthetic tabular data: fit a joint diffusion model to a CSV/Parquet table, sample "
                       "synthetic rows (optionally with fixed column values), evaluate them against real data.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


SEP_HELP = ("Delimiter of a CSV/TSV file: ',', ';', '|', tab (or '\\t'); default: detected from the first "
            "lines.")


@contextmanager
def _readable_warnings():
    """Show warnings as one ``warning: message`` line on stderr instead of Python's file:line format."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *args, **kwargs: typer.secho(
            f"warning: {message}", err=True, fg=typer.colors.YELLOW)
        yield


@app.command()
def fit(
    data: Annotated[Path, typer.Argument(help="Training table: .csv, .tsv or .parquet.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model directory to create.")],
    target: Annotated[Optional[str], typer.Option(help="Column you will condition on most (e.g. the label): "
                                                       "always trained as a condition.")] = None,
    schema: Annotated[Optional[Path], typer.Option(help="JSON/YAML file overriding inferred column kinds, e.g. "
                                                        '{"zip": "categorical", "notes": "ignore"}.')] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Wall-clock training budget.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps (default: about 60 epochs, 1k-10k).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Rows per step (default: min(1024, rows / 4)).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, data order and noise.")] = 0,
    encoding: Annotated[str, typer.Option(help="Text encoding of a CSV file.")] = "utf-8",
    sep: Annotated[Optional[str], typer.Option(help=SEP_HELP)] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT from its latest checkpoint (same data and "
                                              "settings; a larger --steps trains longer).")] = False,
) -> None:
    """Fit a joint diffusion model (numbers: Gaussian, categories: masked) to DATA and save it to OUT."""
    from noisecraft.tabular.io import read_table
    from noisecraft.tabular.model import fit as fit_model

    with _readable_warnings():
        frame = read_table(data, encoding=encoding, sep=sep)  # read here: the model API takes no delimiter
        model = fit_model(frame, target=target, schema=schema, minutes=minutes, out_dir=out, steps=steps,
                          batch_size=batch_size, seed=seed, encoding=encoding, resume=resume)
    typer.echo(f"fitted {model.model_config['steps_done']} steps; model saved to {out}")


@app.command()
def sample(
    model_dir: Annotated[Path, typer.Argument(help="Directory written by `noisecraft tabular fit`.")],
    num_rows: Annotated[int, typer.Option("-n", "--num-rows", help="Number of rows to generate.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output table: .csv, .tsv or .parquet.")],
    where: Annotated[Optional[list[str]], typer.Option(help="Fix a column's value in every row, as col=value; "
                                                            "repeat for several columns.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    steps: Annotated[Optional[int], typer.Option(help="Sampler steps (default: the model's, 32).")] = None,
    batch_size: Annotated[int, typer.Option(help="Rows generated at a time (bounds memory).")] = 16384,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "auto",
) -> None:
    """Generate synthetic rows with the training table's columns, dtypes and labels; OUT.json beside OUT records
    the parameters and seed that made them."""
    import json

    from noisecraft.cli_common import progress_bar
    from noisecraft.tabular.io import write_table
    from noisecraft.tabular.model import TabularModel
    from noisecraft.training.checkpoint import atomic_write_bytes

    model = TabularModel.load(model_dir, device=device)
    request = {"rows": num_rows, "where": where, "batch_size": batch_size} | ({"steps": steps} if steps else {})
    bar = progress_bar("sampling")
    generation = model.generate(request, seed=seed, progress=lambda done, total: bar({"total": total}))
    write_table(generation.items, out)
    record = Path(f"{out}.json")
    atomic_write_bytes(record, json.dumps(generation.parameters, indent=1, sort_keys=True).encode("utf-8"))
    typer.echo(f"wrote {len(generation.items)} rows to {out} ({generation.seconds:.1f} s; parameters: {record})")


@app.command()
def evaluate(
    real: Annotated[Path, typer.Argument(help="The real (training) table.")],
    synthetic: Annotated[Path, typer.Argument(help="The synthetic table.")],
    holdout: Annotated[Optional[Path], typer.Option(help="Real rows not used for training: test set of TSTR/TRTR "
                                                         "and reference of the privacy share.")] = None,
    target: Annotated[Optional[str], typer.Option(help="Column to predict for TSTR/TRTR.")] = None,
    schema: Annotated[Optional[Path], typer.Option(help="Column-kind overrides, as for fit.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="JSON report path (default: SYNTHETIC with "
                                                        "_report.json).")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="PNG of per-column distributions (default: SYNTHETIC with "
                                                      "_columns.png).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of subsampling and the evaluation models.")] = 0,
    encoding: Annotated[str, typer.Option(help="Text encoding of the real and holdout CSV files (the synthetic "
                                               "file is read as UTF-8, as `sample` writes it, unless it is not "
                                               "UTF-8).")] = "utf-8",
    sep: Annotated[Optional[str], typer.Option(help=SEP_HELP + " Applies to the real and holdout files; the "
                                                    "synthetic file's is always detected.")] = None,
    reference: Annotated[bool, typer.Option(help="Also score one half of the real table against the other half "
                                                 "(the real/real column); about doubles the time.")] = True,
) -> None:
    """Compare a synthetic table with real data: TSTR/TRTR, shape and pair-trend errors, detection AUC, privacy,
    each beside the score of real data against real data."""
    from noisecraft.tabular.evaluate import check_target, read_synthetic
    from noisecraft.tabular.evaluate import evaluate as evaluate_tables
    from noisecraft.tabular.io import read_table
    from noisecraft.tabular.report import plot_columns, print_report, save_report
    from noisecraft.tabular.schema import infer_schema, load_schema_file

    with _readable_warnings():
        real_rows = read_table(real, encoding=encoding, sep=sep)
        table_schema = infer_schema(real_rows, overrides=None if schema is None else load_schema_file(schema))
        if target is not None:
            check_target(table_schema, target)  # before reading the other tables: a typo fails at once
        synthetic_rows = read_synthetic(synthetic, encoding=encoding)
        holdout_rows = None if holdout is None else read_table(holdout, encoding=encoding, sep=sep)
    result = evaluate_tables(real_rows, synthetic_rows, holdout=holdout_rows, target=target, schema=table_schema,
                             seed=seed, reference=reference, progress=True)
    print_report(result)
    stem = synthetic.with_suffix("")
    report_path = save_report(result, report or Path(f"{stem}_report.json"))
    plot_path = plot_columns(real_rows, synthetic_rows, table_schema, plot or Path(f"{stem}_columns.png"))
    typer.echo(f"report: {report_path}\nplot: {plot_path}")
