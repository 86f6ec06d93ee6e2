"""``noisecraft serve`` (the HTTP API with in-process workers) and ``noisecraft worker`` (a separate worker process).

Both are plain typer functions; ``noisecraft.cli`` mounts them. ``python -m noisecraft.service.cli serve|worker``
runs them without the main CLI.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

from noisecraft.registry import MissingDependency

DATA_DIR = Path("noisecraft-data")


def _need_service_packages() -> None:
    try:
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
        import uvicorn  # noqa: F401
    except ModuleNotFoundError as error:
        raise MissingDependency(f"the generation service needs {error.name}; install it with: "
                                f"pip install 'noisecraft[serve]'") from error


def _devices(values: list[str]) -> list[str]:
    from noisecraft.device import resolve_device

    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return [str(resolve_device(name)) for name in names or ["cpu"]]


def serve(
    host: Annotated[str, typer.Option(help="Address to bind. The default answers only this machine; use 0.0.0.0 "
                                           "to serve the network (then set --token).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.", min=0, max=65535)] = 8000,
    models: Annotated[Optional[Path], typer.Option(
        "--models", help="Folder of model folders (each with a config.json) to serve besides the shipped models; "
                         "a model's name is its folder's name.")] = None,
    shipped: Annotated[bool, typer.Option("--shipped/--no-shipped",
                                          help="Serve the models shipped with noisecraft too.")] = True,
    data_dir: Annotated[Path, typer.Option(help="Folder for the job store (SQLite) and result files "
                                                "(results/<job id>/).")] = DATA_DIR,
    database: Annotated[Optional[str], typer.Option(
        help="SQLAlchemy database URL instead of the SQLite file in --data-dir, e.g. "
             "postgresql+psycopg://user@host/db (workers must share it, and the data dir).")] = None,
    token: Annotated[Optional[str], typer.Option(
        envvar="NOISECRAFT_TOKEN", help="Require 'Authorization: Bearer TOKEN' on every endpoint but "
                                        "/v1/health (also read from $NOISECRAFT_TOKEN).")] = None,
    workers: Annotated[int, typer.Option(help="Concurrent jobs per device, as threads in this process; 0 = "
                                              "only external `noisecraft worker` processes run jobs.", min=0)] = 1,
    max_queue: Annotated[int, typer.Option(help="Most jobs waiting; more are answered 429 with Retry-After.",
                                           min=1)] = 100,
    device: Annotated[list[str], typer.Option(
        help="Device(s) for the in-process workers: cpu, cuda, cuda:N, mps or auto; repeat or comma-separate "
             "for several (--workers threads each).")] = ["cpu"],
    max_upload_bytes: Annotated[int, typer.Option(help="Largest image upload (decoded bytes).", min=1)]
    = 8 * 1024 * 1024,
    max_upload_pixels: Annotated[int, typer.Option(help="Most pixels (width x height) in an image upload.",
                                                   min=1)] = 4096 * 4096,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body (JSON with base64 images).", min=1)]
    = 32 * 1024 * 1024,
    lease: Annotated[float, typer.Option(help="Seconds without a worker heartbeat after which a running job is "
                                              "put back in the queue (a worker on another host died).",
                                         min=1)] = 30.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level: critical, error, warning, info, debug.")]
    = "info",
) -> None:
    """Run the generation service: an HTTP API (docs at /docs) that queues jobs for every served model and runs
    them in --workers threads. Jobs left running by a server that stopped are re-queued when it starts again."""
    _need_service_packages()
    import uvicorn

    from noisecraft.service.app import ServiceConfig, create_app

    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        typer.secho(f"warning: serving on {host} without --token: anyone who can reach it can run jobs",
                    err=True, fg=typer.colors.YELLOW)
    config = ServiceConfig(data_dir=data_dir, database=database, models_dir=models, include_shipped=shipped,
                           token=token, workers=workers, devices=_devices(device), max_queue=max_queue,
                           max_upload_bytes=max_upload_bytes, max_upload_pixels=max_upload_pixels,
                           max_body_bytes=max_body_bytes, lease=lease)
    app = create_app(config)
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s: %(name)s: %(message)s")
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def worker(
    data_dir: Annotated[Path, typer.Option(help="The API's --data-dir (job store and result files).")] = DATA_DIR,
    database: Annotated[Optional[str], typer.Option(help="The API's --database URL, when it uses one.")] = None,
    device: Annotated[str, typer.Option(help="Device: cpu, cuda, cuda:N, mps or auto.")] = "cpu",
    threads: Annotated[int, typer.Option(help="Jobs this process runs at once.", min=1)] = 1,
    poll: Annotated[float, typer.Option(help="Seconds between looks at an empty queue.", min=0.01)] = 0.5,
    lease: Annotated[float, typer.Option(help="Seconds without a heartbeat after which another worker's running "
                                              "job is re-queued.", min=1)] = 30.0,
    max_jobs: Annotated[Optional[int], typer.Option(help="Exit after this many jobs (default: run until "
                                                         "stopped).", min=1)] = None,
    exit_when_idle: Annotated[bool, typer.Option("--exit-when-idle",
                                                 help="Exit when the queue is empty.")] = False,
) -> None:
    """Run jobs from the service's store in this process (one API can feed many workers): claims queued jobs
    atomically, writes progress and results, honours cancel. Ctrl-C or SIGTERM puts a running job back in the
    queue."""
    _need_service_packages()
    from noisecraft.service.store import JobStore
    from noisecraft.service.worker import PipelineCache, Worker

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(name)s: %(message)s")
    store = JobStore(data_dir, database, lease=lease)
    stop, cache = threading.Event(), PipelineCache()
    resolved = _devices([device])[0]
    runners = [Worker(store, device=resolved, cache=cache, label=f"worker-{i}", stop=stop, poll=poll)
               for i in range(threads)]
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)}
    typer.echo(f"worker {runners[0].name}: {threads} thread(s) on {resolved}, store {store.url}", err=True)
    per_thread = None if max_jobs is None else max(1, max_jobs // threads)
    pool = [threading.Thread(target=r.run, kwargs={"max_jobs": per_thread, "exit_when_idle": exit_when_idle},
                             daemon=True) for r in runners]
    for thread in pool:
        thread.start()
    try:
        while any(thread.is_alive() for thread in pool):
            for thread in pool:
                thread.join(timeout=0.2)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        store.close()
    typer.echo(f"worker stopped after {sum(r.jobs_done for r in runners)} job(s)", err=True)


app = typer.Typer(help="noisecraft generation service.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False)
app.command()(serve)
app.command()(worker)

if __name__ == "__main__":
    app()
