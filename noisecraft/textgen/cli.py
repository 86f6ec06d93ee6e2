"""``noisecraft text fit | sample | evaluate``: thin commands over ``noisecraft.textgen``.

User mistakes are raised as ValueError / FileNotFoundError with a message naming the file, option or character;
the main CLI prints them as one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from noisecraft.cli_common import step_progress_bar

app = typer.Typer(help="Text generation by masked diffusion: fit a model to a UTF-8 corpus (default: "
                       "Shakespeare's plays), sample texts (free, after a prefix, or filling a template's gaps), "
                       "evaluate bits per character on held-out text.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)


@app.command()
def fit(
    corpus: Annotated[str, typer.Argument(help="Training text: a UTF-8 .txt file, a folder of them, or "
                                               "'shakespeare' (37 plays, two held out for evaluate).")] = "shakespeare",
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to create (or to continue with "
                                                          "--resume).")] = ...,
    minutes: Annotated[Optional[float], typer.Option(help="Wall-clock training budget in minutes.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps (default 20000 unless --minutes is "
                                                      "given).")] = None,
    tokenizer: Annotated[str, typer.Option(help="char (one token per character) or bpe (byte-level BPE trained "
                                                "on the corpus).")] = "char",
    bpe_vocab_size: Annotated[int, typer.Option(help="Vocabulary size of the BPE tokenizer.")] = 1024,
    length: Annotated[int, typer.Option(help="Window length in tokens: the longest text the model "
                                             "generates.")] = 256,
    preset: Annotated[str, typer.Option(help="Network size: tiny (tests), small (~3M parameters, CPU) or base "
                                             "(~85M, GPU).")] = "small",
    batch_size: Annotated[int, typer.Option(help="Windows per optimizer step.")] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, linear warm-up).")] = 3e-4,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, data order and masking.")] = 0,
    config: Annotated[Optional[Path], typer.Option(help="JSON file of further options (e.g. {\"stride\": 64, "
                                                        "\"net\": {...}, \"train\": {\"bf16\": true}}); the "
                                                        "command-line options win.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT from its latest checkpoint (same corpus "
                                              "and settings; a larger --steps trains longer).")] = False,
) -> None:
    """Fit a masked-diffusion text model to CORPUS and save it (tokenizer, weights, checkpoints) to OUT."""
    from noisecraft.cli_common import load_json
    from noisecraft.textgen.training import train_text

    options = load_json(config) if config is not None else {}
    options |= {"corpus": corpus, "out_dir": str(out), "minutes": minutes, "steps": steps, "tokenizer": tokenizer,
                "bpe_vocab_size": bpe_vocab_size, "length": length, "preset": preset, "batch_size": batch_size,
                "lr": lr, "seed": seed}
    result = train_text(options, resume=resume)
    stopped = f" (stopped: {result.reason}; continue with --resume)" if result.interrupted else ""
    typer.echo(f"trained {result.step} steps{stopped}; model saved to {out}")


@app.command()
def sample(
    model: Annotated[Path, typer.Argument(help="Model folder written by `noisecraft text fit` (or one of its "
                                               "checkpoints).")],
    n: Annotated[int, typer.Option("-n", "--num", help="Number of texts.")] = 1,
    length: Annotated[Optional[int], typer.Option(help="Tokens per text (characters for a char model); default: "
                                                       "the model's window, or the template's length with "
                                                       "--infill.")] = None,
    prefix: Annotated[str, typer.Option(help="Text each sample starts with (kept as given).")] = "",
    infill: Annotated[str, typer.Option(help="Template whose gaps are generated: [___] is one generated token "
                                             "(character) per _, e.g. 'To be, or [___] to be'; other text is kept "
                                             "(a backslash before [ makes it plain text).")] = "",
    steps: Annotated[Optional[int], typer.Option(help="Denoising steps (default: the model's window).")] = None,
    strategy: Annotated[str, typer.Option(help="ancestral (exact MDLM sampler), random or confidence "
                                               "(MaskGIT).")] = "ancestral",
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0: most probable token).")] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass (1: off).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed: the same seed gives the same texts.")] = 0,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write JSON lines (index, text, parameters) to "
                                                                    "this file instead of printing the texts.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "auto",
) -> None:
    """Generate texts; printed, or written with their parameters as JSON lines with -o."""
    from noisecraft.textgen.pipeline import TextPipeline, texts_jsonl
    from noisecraft.training.checkpoint import atomic_write_bytes

    pipeline = TextPipeline.load(model, device=device)
    request = {"n": n, "length": length, "prefix": prefix, "infill": infill, "strategy": strategy,
               "temperature": temperature, "top_p": top_p} | ({"steps": steps} if steps is not None else {})
    generation = pipeline.generate(request, seed=seed, progress=step_progress_bar("sampling"))
    if out is None:
        for index, text in enumerate(generation.items):
            typer.echo(f"--- text {index} ---\n{text}")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, texts_jsonl(generation))
    typer.echo(f"wrote {len(generation.items)} texts to {out} ({generation.seconds:.1f} s)")


@app.command()
def evaluate(
    model: Annotated[Path, typer.Argument(help="Model folder written by `noisecraft text fit`.")],
    heldout: Annotated[Optional[Path], typer.Argument(help="Held-out UTF-8 text (file or folder); default: the two "
                                                           "held-out plays, for a model trained on the default "
                                                           "corpus.")] = None,
    samples: Annotated[int, typer.Option(help="Monte Carlo draws of the masking time t per window (more: smaller "
                                              "standard error).")] = 4,
    max_windows: Annotated[Optional[int], typer.Option(help="Score at most this many windows, evenly spread "
                                                            "(default: all).")] = None,
    batch_size: Annotated[int, typer.Option(help="Windows per forward pass.")] = 32,
    speed_n: Annotated[int, typer.Option(help="Texts sampled (one window each, steps = window) to measure "
                                              "sampling speed; 0 skips it.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the Monte Carlo draws and the timed samples.")] = 0,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="JSON report (default: "
                                                                    "MODEL/evaluation.json).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "auto",
) -> None:
    """Bits per character on held-out text (the NELBO bound, averaged over its characters, with its standard
    error) and the sampling speed in tokens per second; printed and written as JSON."""
    from noisecraft.textgen.evaluate import evaluate_model
    from noisecraft.textgen.pipeline import TextPipeline
    from noisecraft.training.checkpoint import atomic_write_bytes

    pipeline = TextPipeline.load(model, device=device)
    report = evaluate_model(pipeline, heldout, samples=samples, max_windows=max_windows, batch_size=batch_size,
                            speed_n=speed_n, seed=seed, progress=True)
    text = json.dumps(report, indent=1, sort_keys=True, allow_nan=False)
    path = out or Path(pipeline.source) / "evaluation.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))
    typer.echo(text)
    typer.echo(f"report: {path}")
