"""The job runner: claims queued jobs from the store, generates through the pipeline protocol, saves the results.

The same loop runs as threads inside the API process (``noisecraft serve --workers N``) and as separate processes
(``noisecraft worker``) that share the API's database and data dir. Everything a client sees goes through the
store: progress (throttled), a heartbeat, the cancel flag (read at every step, throttled), the final state.

A job ends ``succeeded`` (result files under ``results/<id>/``), ``failed`` (the error), ``cancelled`` (cancel
flag seen at a step), or ``refused`` (a protocol check raised :class:`~noisecraft.protocol.Refused`; the reason is
stored). A worker told to stop (shutdown) puts its running job back in the queue instead of cancelling it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
import uuid
from pathlib import Path

from noisecraft.protocol import Cancelled, ParameterError, Refused
from noisecraft.service.models import PipelineCache
from noisecraft.service.store import JobStore, worker_name

log = logging.getLogger("noisecraft.service")
UPLOAD = re.compile(r"^uploads/[0-9a-f]{64}\.[a-z]{2,5}$")


def resolve_uploads(pipeline, params: dict, data_dir: Path) -> dict:
    """The job's params with each image parameter's stored upload name made a path in ``data_dir``. Only names
    the API wrote (``uploads/<sha256>.<ext>``) are accepted, so no client string ever becomes a path."""
    params = dict(params)
    for param in pipeline.parameters():
        value = params.get(param.name)
        if param.kind != "image" or value is None:
            continue
        if not isinstance(value, str) or not UPLOAD.match(value):
            raise ParameterError(param.name, "must be an image uploaded with the job (base64 in the request)")
        params[param.name] = str(data_dir / value)
    return params


class Worker:
    """One job at a time, until ``stop`` is set. ``wake`` (optional) is set by the API when it queues a job."""

    def __init__(self, store: JobStore, *, device: str = "cpu", cache: PipelineCache | None = None,
                 label: str = "worker", stop: threading.Event | None = None, wake: threading.Event | None = None,
                 poll: float = 0.5, progress_every: float = 0.2, cancel_every: float = 0.1):
        self.store, self.device = store, str(device)
        self.cache = cache or PipelineCache()
        self.name = worker_name(label)
        self.stop = stop or threading.Event()
        self.wake = wake
        self.poll, self.progress_every, self.cancel_every = poll, progress_every, cancel_every
        self.heartbeat_every = max(0.5, min(5.0, store.lease / 3))
        self.jobs_done = 0

    def run(self, *, max_jobs: int | None = None, exit_when_idle: bool = False) -> int:
        """Claim and run jobs until stopped (or ``max_jobs`` ran, or the queue is empty with ``exit_when_idle``);
        returns how many ran."""
        last_sweep = 0.0
        while not self.stop.is_set():
            if time.monotonic() - last_sweep > self.heartbeat_every:
                last_sweep = time.monotonic()
                for job_id in self.store.requeue_lost():
                    log.warning("job %s: its worker is gone; re-queued", job_id)
            try:
                job = self.store.claim(self.name)
            except Exception:  # a database hiccup must not kill the worker
                log.exception("claiming a job failed; retrying")
                self.stop.wait(self.poll)
                continue
            if job is None:
                if exit_when_idle:
                    break
                if self.wake is not None:
                    if self.wake.wait(self.poll):
                        self.wake.clear()
                else:
                    self.stop.wait(self.poll)
                continue
            self.run_job(job)
            self.jobs_done += 1
            if max_jobs is not None and self.jobs_done >= max_jobs:
                break
        return self.jobs_done

    def run_job(self, job: dict) -> str:
        """Run one claimed job to its end; returns its final state ("queued" when put back at shutdown)."""
        job_id, store = job["id"], self.store
        done_event = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job_id, done_event), daemon=True,
                                name=f"heartbeat-{job_id[:8]}")
        beat.start()
        last = {"progress": 0.0, "cancel": 0.0, "cancelled": False}

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if done >= total or now - last["progress"] >= self.progress_every:
                last["progress"] = now
                store.progress(job_id, self.name, done, total)

        def cancel() -> bool:
            if self.stop.is_set():
                return True
            now = time.monotonic()
            if not last["cancelled"] and now - last["cancel"] >= self.cancel_every:
                last["cancel"] = now
                last["cancelled"] = store.cancel_requested(job_id)
            return last["cancelled"]

        try:
            return self._generate(job, progress, cancel)
        finally:
            done_event.set()
            beat.join(timeout=5)

    def _generate(self, job: dict, progress, cancel) -> str:
        job_id, store = job["id"], self.store
        try:
            pipeline = self.cache.get(job["model_path"], self.device)
            params = resolve_uploads(pipeline, job["params"], store.data_dir)
            generation = pipeline.generate(params, seed=int(job["seed"]), progress=progress, cancel=cancel)
            names = self._save(pipeline, generation, job_id)
        except Cancelled as stopped:
            if self.stop.is_set() and not store.cancel_requested(job_id):
                store.requeue(job_id, self.name)
                log.info("job %s: worker stopping; re-queued", job_id)
                return "queued"
            store.finish(job_id, self.name, "cancelled", error=None, refusal=None, notes=[str(stopped)])
            return "cancelled"
        except Refused as refused:
            store.finish(job_id, self.name, "refused", refusal=refused.reason
                         + (f" (check: {refused.check})" if refused.check else ""))
            return "refused"
        except (ParameterError, ValueError, FileNotFoundError) as error:
            store.finish(job_id, self.name, "failed", error=str(error))
            return "failed"
        except Exception as error:  # a bug or a device failure: keep the traceback in the log, the message in the job
            log.exception("job %s failed", job_id)
            store.finish(job_id, self.name, "failed", error=f"{type(error).__name__}: {error}")
            return "failed"
        if not store.finish(job_id, self.name, "succeeded", seconds=generation.seconds, results=names,
                            record=generation.parameters, notes=generation.notes):
            log.warning("job %s finished after it was taken from this worker; result dropped", job_id)
            return "lost"
        return "succeeded"

    def _save(self, pipeline, generation, job_id: str) -> list[str]:
        """``save_outputs`` into a temporary folder, renamed to ``results/<id>/`` (readers never see half a job)."""
        final = self.store.results_dir(job_id)
        temporary = final.parent / f".{job_id}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            files = pipeline.save_outputs(generation, temporary)
            names = [Path(f).resolve().relative_to(temporary.resolve()).as_posix() for f in files]
            if final.exists():
                shutil.rmtree(final)
            os.replace(temporary, final)
        finally:
            if temporary.exists():
                shutil.rmtree(temporary, ignore_errors=True)
        return names

    def _heartbeat(self, job_id: str, done: threading.Event) -> None:
        while not done.wait(self.heartbeat_every):
            try:
                self.store.heartbeat(job_id, self.name)
            except Exception:
                log.exception("heartbeat for job %s failed", job_id)


class WorkerPool:
    """``count`` worker threads per device inside this process (the API's in-process workers)."""

    def __init__(self, store: JobStore, *, devices: list[str], count: int, cache: PipelineCache,
                 poll: float = 0.5):
        self.stop, self.wake = threading.Event(), threading.Event()
        self.workers = [Worker(store, device=device, cache=cache, label=f"thread-{device}-{i}", stop=self.stop,
                               wake=self.wake, poll=poll)
                        for device in devices for i in range(count)]
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for worker in self.workers:
            thread = threading.Thread(target=worker.run, name=worker.name, daemon=True)
            thread.start()
            self.threads.append(thread)

    def notify(self) -> None:
        self.wake.set()

    def close(self, timeout: float = 30.0) -> None:
        """Stop: running jobs stop at their next step and go back to the queue."""
        self.stop.set()
        self.wake.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
