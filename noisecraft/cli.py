"""The ``noisecraft`` command line (typer): one group per registered modality, plus ``info`` and ``demo``.

``noisecraft image ...``, ``noisecraft tabular ...`` (and every modality registered later) come from the modality
registry (:mod:`noisecraft.registry`). The image commands stay at the root too (``noisecraft train``, ``sample``,
``generate``, ``eval``), as the README has always written them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from noisecraft import registry

app = typer.Typer(
    help="noisecraft: train diffusion models and generate from them (images, text-to-image, tables, text, "
         "molecules, video, 3D point clouds).\n\n"
         "Start with `noisecraft demo` (trains a digits model on the CPU in a few minutes and writes pictures). "
         "Each modality has its own group: `noisecraft image --help`, `noisecraft text --help`, ...",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)

# User mistakes surface as these; anything else (TypeError, KeyError, ...) is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError, FloatingPointError, registry.MissingDependency)


def build_app() -> typer.Typer:
    """The full app: each registered modality's sub-app, and the image commands at the root (README aliases)."""
    if any(group.name == "image" for group in app.registered_groups):
        return app
    from noisecraft.images.cli import ROOT_ALIASES
    from noisecraft.images.cli_text import eval_app
    from noisecraft.images.cli_text import register as register_text_commands

    for modality in registry.modalities():
        if modality.cli is None:
            continue
        try:
            sub_app = modality.resolve("cli")
            if modality.evaluate is not None:  # `noisecraft eval <modality>`, beside `eval shapes`
                eval_app.command(modality.name)(modality.resolve("evaluate"))
        except registry.MissingDependency as error:  # an optional modality whose extra is not installed
            sub_app = typer.Typer(help=f"{modality.summary} (unavailable: {error})")
        app.add_typer(sub_app, name=modality.name, help=modality.summary)
    for name, command in ROOT_ALIASES.items():
        app.command(name)(command)
    register_text_commands(app)  # generate, eval shapes (and each modality's eval command, added above)
    from noisecraft.distill.cli import distill_command

    app.command("distill")(distill_command)
    from noisecraft.cli_likelihood import likelihood

    app.command("likelihood")(likelihood)  # any modality with a registry `likelihood` entry
    _mount_service()
    return app


@app.callback()
def _root(safety: Annotated[bool, typer.Option("--safety/--no-safety", help="Safety filters on prompts and outputs (on "
                                              "by default; NOISECRAFT_SAFETY=off also turns them off, "
                                              "NOISECRAFT_SAFETY=policy.json picks a policy).")] = True) -> None:
    if safety:
        from noisecraft.safety import ensure_enabled

        ensure_enabled()


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder for the demo.")] = Path("runs/demo"),
    steps: Annotated[int, typer.Option(help="Training steps (the default takes about 5 minutes on 2 CPU "
                                            "cores; training stops after 8 minutes in any case).")] = 800,
) -> None:
    """Draw prompts with the shipped text-to-image model (seconds), then train a class-conditional digits model on
    the CPU and write a sample grid (one row per digit)."""
    from noisecraft.demo import run_demo

    run_demo(out, steps=steps)


def _mount_service() -> None:
    """`serve` and `worker`, when the service's packages (the `serve` extra) are installed."""
    try:
        from noisecraft.service.cli import serve, worker
    except ModuleNotFoundError as error:
        missing = f"needs {error.name}: pip install 'noisecraft[serve]'"
        stub = typer.Typer(help=f"Generation service (unavailable: {missing}).")
        app.add_typer(stub, name="serve")
        return
    app.command(help=serve.__doc__)(serve)
    app.command(help=worker.__doc__)(worker)


@app.command()
def info(
    model: Annotated[Path, typer.Argument(help="Model folder (any modality), run folder or checkpoint.")],
    full: Annotated[bool, typer.Option("--full", help="Print the whole stored config.json as well.")] = False,
) -> None:
    """Describe a model folder: modality, training step, size (parameters, files) and the parameters it takes."""
    from noisecraft.model_info import describe_model_folder

    typer.echo(describe_model_folder(model, full=full))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``warning: ...`` line for people, not Python's ``file:line: UserWarning`` form."""
    typer.secho(f"warning: {message}", err=True, fg=typer.colors.YELLOW)


def main(argv: list[str] | None = None) -> None:
    """Entry point; user errors end with a one-line message and exit status 2, never a traceback."""
    import warnings

    build_app()
    try:
        with warnings.catch_warnings():  # restores Python's printer when main() returns to a calling program
            warnings.showwarning = _show_warning
            app(args=argv)
    except USER_ERRORS as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.secho("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
