"""Restarts and separate worker processes: a new app on the same data dir serves finished jobs and re-queues the
running ones; `python -m noisecraft.service.cli worker` claims and finishes jobs submitted through the API."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from test_service_support import (  # noqa: E402,F401
    make_app, stub_model, stub_registered, tiny_image_model, wait_for)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, stub_registered, tiny_image_model):
    folder = tmp_path_factory.mktemp("models")
    stub_model(folder / "stub")
    shutil.copytree(tiny_image_model, folder / "digits")
    return folder


def test_a_restarted_app_serves_finished_jobs_and_requeues_running_ones(tmp_path, models_dir):
    data = tmp_path / "data"
    with TestClient(make_app(data, models_dir, workers=1)) as client:
        finished = client.post("/v1/jobs", json={"model": "stub", "params": {"steps": 2}, "seed": 1}).json()
        finished = wait_for(client, finished["id"])
        first_bytes = client.get(finished["results"][0]["url"]).content
        running = client.post("/v1/jobs", json={"model": "stub", "params": {"steps": 300, "sleep": 0.02}}).json()
        wait_for(client, running["id"], until=lambda j: j["progress"]["done"] >= 1)
    # the app stopped mid-job: its worker put the job back in the queue instead of cancelling it
    with TestClient(make_app(data, models_dir, workers=0)) as client:
        job = client.get(f"/v1/jobs/{running['id']}").json()
        assert job["state"] == "queued" and job["position"] == 0 and job["progress"]["done"] == 0
        assert client.get(finished["results"][0]["url"]).content == first_bytes
        assert client.get(f"/v1/jobs/{finished['id']}").json()["state"] == "succeeded"

    # a server killed mid-job (its process gone, the job still marked running) gets it back at start-up
    store = client.app.state.store
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True).stdout)
    claimed = store.claim(f"{socket.gethostname()}:{dead_pid}:thread-cpu-0")
    assert claimed["id"] == running["id"] and store.get(running["id"])["state"] == "running"
    with TestClient(make_app(data, models_dir, workers=1)) as client:
        assert client.app.state.requeued_at_start == [running["id"]]
        client.post(f"/v1/jobs/{running['id']}/cancel")  # no need to wait 300 steps
        done = wait_for(client, running["id"])
        assert done["state"] == "cancelled" and done["attempts"] >= 2


def _worker_process(data: Path, *extra: str) -> subprocess.Popen:
    env = os.environ | {"PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "noisecraft.service.cli", "worker", "--data-dir", str(data),
                             "--poll", "0.05", *extra], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_a_separate_worker_process_claims_and_finishes_api_jobs(tmp_path, models_dir):
    data = tmp_path / "data"
    with TestClient(make_app(data, models_dir, workers=0)) as client:  # the API runs no jobs itself
        params = {"n": 2, "steps": 1, "labels": ["4"], "sampler": "euler"}
        ids = [client.post("/v1/jobs", json={"model": "digits", "params": params, "seed": 3}).json()["id"]
               for _ in range(2)]
        worker = _worker_process(data, "--max-jobs", "2")
        try:
            jobs = [wait_for(client, job_id, timeout=120) for job_id in ids]
            worker.wait(timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
        output = worker.stdout.read()
        assert worker.returncode == 0, output
        assert [job["state"] for job in jobs] == ["succeeded", "succeeded"], output
        assert all(str(worker.pid) in (job_worker := client.app.state.store.get(j["id"])["worker"]) and
                   job_worker.endswith("worker-0") for j in jobs)
        files = [[client.get(r["url"]).content for r in job["results"]] for job in jobs]
        assert files[0] == files[1] and files[0][0].startswith(b"\x89PNG")  # same seed, same bytes


def test_a_worker_process_honours_cancel_and_requeues_its_job_when_stopped(tmp_path, models_dir):
    data = tmp_path / "data"
    with TestClient(make_app(data, models_dir, workers=0)) as client:
        slow = {"model": "digits", "params": {"n": 1, "steps": 1000, "sampler": "euler"}, "seed": 0}
        first = client.post("/v1/jobs", json=slow).json()["id"]
        worker = _worker_process(data)
        try:
            wait_for(client, first, timeout=120, until=lambda j: j["progress"]["done"] >= 1)
            assert client.post(f"/v1/jobs/{first}/cancel").status_code == 200
            assert wait_for(client, first, timeout=30)["state"] == "cancelled"
            second = client.post("/v1/jobs", json=slow).json()["id"]
            wait_for(client, second, timeout=60, until=lambda j: j["progress"]["done"] >= 1)
            worker.send_signal(signal.SIGTERM)  # stopping mid-job puts the job back, it is not lost
            worker.wait(timeout=30)
            job = client.get(f"/v1/jobs/{second}").json()
            assert job["state"] == "queued" and job["position"] == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        assert worker.returncode == 0, worker.stdout.read()
