"""The job store: one small interface over SQLAlchemy Core (SQLite by default, PostgreSQL by URL).

One table, ``jobs``. The API process writes queued jobs; workers (threads in the API process, or ``noisecraft
worker`` processes sharing the database) claim them atomically, write throttled progress and a heartbeat, read the
cancel flag and finish them. Every write that moves a job out of ``running`` names the worker that claimed it, so a
worker that lost its job (re-queued after its heartbeat went stale) cannot overwrite the new owner's result.

Claiming: SQLite takes the database's write lock for every transaction (``BEGIN IMMEDIATE``) and claims with one
``UPDATE ... WHERE state='queued' AND seq=(SELECT ... LIMIT 1) RETURNING``; PostgreSQL selects the next queued row
``FOR UPDATE SKIP LOCKED``, so concurrent workers never take the same job and never wait on each other.

Restarts: a job left ``running`` by a worker that is gone (its process on this host has exited, or its heartbeat is
older than the lease) is put back in the queue by :meth:`JobStore.requeue_lost`, which the API runs at start-up and
every worker runs while it polls. Finished jobs (succeeded, failed, cancelled, refused) stay in the store with their
result files under ``<data-dir>/results/<id>/``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

STATES = ("queued", "running", "succeeded", "failed", "cancelled", "refused")
FINISHED = ("succeeded", "failed", "cancelled", "refused")
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
DATABASE_FILE = "jobs.sqlite"

metadata = sa.MetaData()
jobs = sa.Table(
    "jobs", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),  # queue and history order
    sa.Column("id", sa.String(32), nullable=False, unique=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("modality", sa.String(100), nullable=False),
    sa.Column("model_path", sa.Text, nullable=False),
    sa.Column("params", sa.Text, nullable=False),  # JSON: the request's params (uploads as data-dir paths)
    sa.Column("seed", sa.BigInteger, nullable=False),
    sa.Column("seed_was_random", sa.Boolean, nullable=False, default=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("queued_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("heartbeat_at", sa.Float),
    sa.Column("seconds", sa.Float),  # generation time reported by the pipeline
    sa.Column("progress_done", sa.Integer, nullable=False, default=0),
    sa.Column("progress_total", sa.Integer, nullable=False, default=0),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("worker", sa.String(200)),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.Column("refusal", sa.Text),
    sa.Column("results", sa.Text),  # JSON list of file names in results/<id>/
    sa.Column("record", sa.Text),  # JSON: Generation.parameters
    sa.Column("notes", sa.Text),  # JSON list: Generation.notes
)


class QueueFull(Exception):
    """The queue holds ``limit`` jobs already."""

    def __init__(self, limit: int, queued: int):
        super().__init__(f"the queue is full ({queued} jobs waiting; --max-queue {limit}); retry later")
        self.limit, self.queued = limit, queued


def valid_job_id(job_id: str) -> bool:
    """Job ids are server-made UUID hex (32 lowercase hex digits); nothing else is ever used as a path part."""
    return isinstance(job_id, str) and bool(JOB_ID.match(job_id))


def worker_name(label: str) -> str:
    """``host:pid:label``: lets :meth:`JobStore.requeue_lost` tell a live worker from a dead one on this host."""
    return f"{socket.gethostname()}:{os.getpid()}:{label}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _worker_is_dead(worker: str | None) -> bool:
    """True for a worker of this host whose process has exited (another host's workers: judged by heartbeat)."""
    if not worker:
        return True
    host, _, rest = worker.partition(":")
    pid, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return int(pid) != os.getpid() and not _process_alive(int(pid))


def database_url(data_dir: str | Path, database: str | None = None) -> str:
    """``database`` when given, else the SQLite file in ``data_dir``."""
    if database:
        return database
    return f"sqlite:///{Path(data_dir).resolve() / DATABASE_FILE}"


class JobStore:
    """Jobs in a database (``url``) and their result files under ``data_dir``."""

    def __init__(self, data_dir: str | Path, database: str | None = None, *, lease: float = 30.0):
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "results").mkdir(exist_ok=True)
        (self.data_dir / "uploads").mkdir(exist_ok=True)
        self.url = database_url(self.data_dir, database)
        self.lease = float(lease)
        self.sqlite = self.url.startswith("sqlite")
        if self.sqlite:
            self.engine = sa.create_engine(self.url, connect_args={"timeout": 60, "check_same_thread": False})
            sa.event.listen(self.engine, "connect", _sqlite_connect)
            sa.event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = sa.create_engine(self.url, pool_pre_ping=True)
        metadata.create_all(self.engine)
        self.reader = self.engine.execution_options(noisecraft_read=True)

    def close(self) -> None:
        self.engine.dispose()

    # --- paths ---

    def results_dir(self, job_id: str) -> Path:
        if not valid_job_id(job_id):
            raise ValueError(f"invalid job id {job_id!r}")
        return self.data_dir / "results" / job_id

    # --- writes from the API ---

    def create(self, *, model: str, modality: str, model_path: str, params: dict, seed: int,
               seed_was_random: bool = False, max_queue: int | None = None) -> dict:
        """A new queued job; :class:`QueueFull` when ``max_queue`` jobs are waiting already."""
        job_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            if max_queue is not None:
                queued = conn.execute(sa.select(sa.func.count()).select_from(jobs)
                                      .where(jobs.c.state == "queued")).scalar_one()
                if queued >= max_queue:
                    raise QueueFull(max_queue, queued)
            conn.execute(jobs.insert().values(
                id=job_id, model=model, modality=modality, model_path=str(model_path),
                params=json.dumps(params, sort_keys=True), seed=int(seed), seed_was_random=seed_was_random,
                state="queued", queued_at=time.time(), progress_done=0, progress_total=0, cancel_requested=False,
                attempts=0))
        return self.get(job_id)

    def request_cancel(self, job_id: str) -> dict | None:
        """Cancel a queued job at once; flag a running one (its worker stops at the next step). Finished jobs are
        left as they are. Returns the job after the change (None: no such job)."""
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == "queued")
                         .values(state="cancelled", cancel_requested=True, finished_at=time.time()))
            conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == "running")
                         .values(cancel_requested=True))
        return self.get(job_id)

    # --- reads ---

    def get(self, job_id: str) -> dict | None:
        if not valid_job_id(job_id):
            return None
        with self.reader.begin() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
            if row is None:
                return None
            job = _decode(row)
            job["position"] = self._position(conn, row) if row["state"] == "queued" else None
        return job

    def _position(self, conn, row) -> int:
        """How many queued jobs are ahead of this one (0: it is next)."""
        return conn.execute(sa.select(sa.func.count()).select_from(jobs)
                            .where(jobs.c.state == "queued", jobs.c.seq < row["seq"])).scalar_one()

    def list(self, *, limit: int = 20, before: str | None = None) -> list[dict]:
        """Jobs newest first; ``before``: only jobs submitted before that job (the previous page's last id)."""
        with self.reader.begin() as conn:
            query = sa.select(jobs).order_by(jobs.c.seq.desc()).limit(limit)
            if before is not None:
                anchor = conn.execute(sa.select(jobs.c.seq).where(jobs.c.id == before)).scalar_one_or_none()
                if anchor is None:
                    raise KeyError(before)
                query = query.where(jobs.c.seq < anchor)
            rows = conn.execute(query).mappings().all()
            out = []
            for row in rows:
                job = _decode(row)
                job["position"] = self._position(conn, row) if row["state"] == "queued" else None
                out.append(job)
        return out

    def queued_count(self) -> int:
        with self.reader.begin() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(jobs).where(jobs.c.state == "queued")).scalar_one()

    def counts(self) -> dict[str, int]:
        with self.reader.begin() as conn:
            rows = conn.execute(sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)).all()
        return {state: 0 for state in STATES} | {state: count for state, count in rows}

    def recent_seconds(self, count: int = 20) -> float | None:
        """Mean wall time (start to finish) of the last ``count`` succeeded jobs: for Retry-After estimates."""
        with self.reader.begin() as conn:
            rows = conn.execute(sa.select(jobs.c.started_at, jobs.c.finished_at)
                                .where(jobs.c.state == "succeeded").order_by(jobs.c.seq.desc()).limit(count)).all()
        spans = [finished - started for started, finished in rows if started and finished]
        return sum(spans) / len(spans) if spans else None

    # --- writes from workers ---

    def claim(self, worker: str) -> dict | None:
        """Atomically move the oldest queued job to ``running`` for ``worker``; None when the queue is empty."""
        now = time.time()
        values = dict(state="running", worker=worker, started_at=now, heartbeat_at=now, progress_done=0,
                      progress_total=0, attempts=jobs.c.attempts + 1)
        with self.engine.begin() as conn:
            next_job = sa.select(jobs.c.seq).where(jobs.c.state == "queued").order_by(jobs.c.seq).limit(1)
            if self.sqlite:  # the transaction holds SQLite's write lock (BEGIN IMMEDIATE): one statement is enough
                row = conn.execute(jobs.update().where(jobs.c.state == "queued",
                                                       jobs.c.seq == next_job.scalar_subquery())
                                   .values(**values).returning(jobs.c.id)).first()
            else:  # PostgreSQL (and others with row locks): skip rows another worker is claiming
                seq = conn.execute(next_job.with_for_update(skip_locked=True)).scalar_one_or_none()
                row = None if seq is None else conn.execute(
                    jobs.update().where(jobs.c.seq == seq, jobs.c.state == "queued").values(**values)
                    .returning(jobs.c.id)).first()
        return None if row is None else self.get(row[0])

    def progress(self, job_id: str, worker: str, done: int, total: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.worker == worker, jobs.c.state == "running")
                         .values(progress_done=int(done), progress_total=int(total), heartbeat_at=time.time()))

    def heartbeat(self, job_id: str, worker: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.worker == worker, jobs.c.state == "running")
                         .values(heartbeat_at=time.time()))

    def cancel_requested(self, job_id: str) -> bool:
        with self.reader.begin() as conn:
            return bool(conn.execute(sa.select(jobs.c.cancel_requested).where(jobs.c.id == job_id)).scalar())

    def still_owned(self, job_id: str, worker: str) -> bool:
        with self.reader.begin() as conn:
            return conn.execute(sa.select(jobs.c.seq).where(jobs.c.id == job_id, jobs.c.worker == worker,
                                                            jobs.c.state == "running")).first() is not None

    def finish(self, job_id: str, worker: str, state: str, *, seconds: float | None = None,
               results: list[str] | None = None, record: dict | None = None, notes: list[str] | None = None,
               error: str | None = None, refusal: str | None = None) -> bool:
        """Move a running job owned by ``worker`` to a finished ``state``; False when the worker no longer owns it."""
        if state not in FINISHED:
            raise ValueError(f"not a finished state: {state!r}")
        values: dict[str, Any] = dict(state=state, finished_at=time.time(), error=error, refusal=refusal)
        if seconds is not None:
            values["seconds"] = seconds
        if results is not None:
            values["results"] = json.dumps(results)
        if record is not None:
            values["record"] = json.dumps(record, sort_keys=True, default=str)
        if notes is not None:
            values["notes"] = json.dumps(list(notes), default=str)
        with self.engine.begin() as conn:
            updated = conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.worker == worker,
                                                       jobs.c.state == "running").values(**values)).rowcount
        return updated == 1

    def requeue(self, job_id: str, worker: str) -> bool:
        """Put a running job back in the queue (its worker is shutting down); keeps its place in the queue."""
        with self.engine.begin() as conn:
            return conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.worker == worker,
                                                    jobs.c.state == "running")
                                .values(state="queued", worker=None, started_at=None, heartbeat_at=None,
                                        progress_done=0, progress_total=0)).rowcount == 1

    def requeue_lost(self) -> list[str]:
        """Re-queue running jobs whose worker is gone: a process of this host that has exited, or any worker whose
        heartbeat is older than the lease. Returns their ids. A job cancelled while it ran is cancelled instead."""
        now = time.time()
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(jobs.c.id, jobs.c.worker, jobs.c.heartbeat_at, jobs.c.cancel_requested)
                                .where(jobs.c.state == "running")).all()
            lost = [row for row in rows
                    if _worker_is_dead(row.worker) or (row.heartbeat_at or 0) < now - self.lease]
            for row in lost:
                guard = (jobs.c.id == row.id, jobs.c.state == "running", jobs.c.worker == row.worker)
                if row.cancel_requested:
                    conn.execute(jobs.update().where(*guard).values(state="cancelled", finished_at=now))
                else:
                    conn.execute(jobs.update().where(*guard).values(
                        state="queued", worker=None, started_at=None, heartbeat_at=None, progress_done=0,
                        progress_total=0))
        return [row.id for row in lost if not row.cancel_requested]


def _decode(row) -> dict:
    job = dict(row)
    for key, empty in (("params", {}), ("results", []), ("record", None), ("notes", [])):
        job[key] = json.loads(job[key]) if job.get(key) else empty
    job["cancel_requested"] = bool(job["cancel_requested"])
    job["seed_was_random"] = bool(job["seed_was_random"])
    return job


def _sqlite_connect(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below), pysqlite must not
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn) -> None:
    # reads see a consistent snapshot without the write lock (WAL); writes take it at once, so a transaction
    # never has to upgrade its lock halfway (which SQLite answers with "database is locked")
    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("noisecraft_read") else "BEGIN IMMEDIATE")
