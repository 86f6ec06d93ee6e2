"""The service's job store (noisecraft.service.store): atomic claims, guarded finishes, lost-job recovery, cancel
flags; on SQLite always, on PostgreSQL when NOISECRAFT_TEST_POSTGRES_URL names a server to use."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("sqlalchemy")
from noisecraft.service.store import JobStore, QueueFull, valid_job_id  # noqa: E402

POSTGRES_URL = os.environ.get("NOISECRAFT_TEST_POSTGRES_URL")


def _postgres_store(data_dir, *, clear: bool):
    if not POSTGRES_URL:
        pytest.skip("no PostgreSQL server: set NOISECRAFT_TEST_POSTGRES_URL=postgresql+psycopg://user@host/db "
                    "(an empty database the test may fill) to run the store tests on PostgreSQL")
    pytest.importorskip("psycopg", reason="PostgreSQL tests need the psycopg driver (pip install psycopg[binary])")
    store = JobStore(data_dir, POSTGRES_URL)
    from noisecraft.service.store import jobs

    if clear:
        with store.engine.begin() as conn:
            conn.execute(jobs.delete())
    return store


@pytest.fixture(params=["sqlite", "postgresql"])
def make_store(request, tmp_path):
    stores = []

    def make(**options):
        if request.param == "sqlite":
            store = JobStore(tmp_path / "data", **options)
        else:
            store = _postgres_store(tmp_path / "data", clear=not stores)
            store.lease = options.get("lease", store.lease)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def _job(store, **kwargs):
    return store.create(model="m", modality="stub", model_path="/nowhere", params={"a": 1}, seed=3, **kwargs)


def test_jobs_are_created_queued_with_server_made_ids_and_positions(make_store):
    store = make_store()
    first, second = _job(store), _job(store)
    assert valid_job_id(first["id"]) and first["id"] != second["id"]
    assert (first["state"], first["position"], second["position"]) == ("queued", 0, 1)
    assert store.get(first["id"])["params"] == {"a": 1} and store.get("../../etc") is None
    with pytest.raises(QueueFull, match="--max-queue 2"):
        _job(store, max_queue=2)
    assert [job["id"] for job in store.list(limit=10)] == [second["id"], first["id"]]
    with pytest.raises(ValueError):
        store.results_dir("../x")


def test_concurrent_claims_take_each_job_exactly_once(make_store):
    store = make_store()
    ids = {_job(store)["id"] for _ in range(24)}
    claimed: dict[str, list[str]] = {}
    stores = [make_store() for _ in range(4)]  # separate engines: separate connections, as separate processes

    def claim_all(index):
        mine = claimed.setdefault(f"w{index}", [])
        while (job := stores[index].claim(f"host:1:w{index}")) is not None:
            mine.append(job["id"])

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    everything = [job_id for jobs in claimed.values() for job_id in jobs]
    assert sorted(everything) == sorted(ids)  # all claimed, none twice
    assert store.counts()["running"] == 24


def test_claims_go_in_submission_order_and_finishes_are_guarded_by_the_owner(make_store):
    store = make_store()
    first, second = _job(store), _job(store)
    job = store.claim("host:1:a")
    assert job["id"] == first["id"] and job["state"] == "running" and job["attempts"] == 1
    assert not store.finish(job["id"], "host:1:other", "succeeded")  # not its job
    store.progress(job["id"], "host:1:a", 2, 5)
    assert store.get(job["id"])["progress_done"] == 2
    assert store.finish(job["id"], "host:1:a", "succeeded", results=["x.png"], seconds=1.5, record={"seed": 3})
    done = store.get(job["id"])
    assert (done["state"], done["results"], done["record"]) == ("succeeded", ["x.png"], {"seed": 3})
    assert not store.finish(job["id"], "host:1:a", "failed")  # finished jobs stay finished
    assert store.get(second["id"])["position"] == 0


def test_cancel_queued_at_once_and_flag_running_jobs(make_store):
    store = make_store()
    running, queued = _job(store), _job(store)
    store.claim("host:1:a")
    assert store.request_cancel(queued["id"])["state"] == "cancelled"
    flagged = store.request_cancel(running["id"])
    assert flagged["state"] == "running" and flagged["cancel_requested"] and store.cancel_requested(running["id"])


def test_lost_jobs_are_requeued_and_cancelled_ones_cancelled(make_store):
    store = make_store(lease=30)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = socket.gethostname()
    jobs = [_job(store) for _ in range(4)]
    store.claim(f"{host}:{dead_pid}:thread-0")  # a process of this host that has exited
    store.claim("elsewhere:1:w")  # another host, fresh heartbeat: alive
    store.claim("elsewhere:2:w")  # another host, cancelled while it ran, then went silent
    store.request_cancel(jobs[2]["id"])
    store.claim(f"{host}:{os.getpid()}:alive")  # this process: alive
    from noisecraft.service.store import jobs as table

    with store.engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == jobs[2]["id"]).values(heartbeat_at=time.time() - 60))
    assert store.requeue_lost() == [jobs[0]["id"]]
    states = [store.get(job["id"])["state"] for job in jobs]
    assert states == ["queued", "running", "cancelled", "running"]
    assert store.get(jobs[0]["id"])["position"] == 0
    store.lease = 0.0  # every heartbeat is now stale: the other host's job goes back too
    time.sleep(0.01)
    assert set(store.requeue_lost()) == {jobs[1]["id"], jobs[3]["id"]}
    again = store.claim("host:1:b")
    assert again["id"] == jobs[0]["id"] and again["attempts"] == 2
