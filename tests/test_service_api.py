"""The generation service's HTTP API (noisecraft.service.app) in-process: every endpoint, every kind of bad input
answered 4xx with a message naming what was wrong, cancel, checks, uploads and reproducible results."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from test_service_support import (  # noqa: E402,F401
    STUB, make_app, png_base64, stub_model, stub_registered, tiny_image_model, wait_for)

from noisecraft.protocol import Refused, add_check  # noqa: E402


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, stub_registered, tiny_image_model):
    folder = tmp_path_factory.mktemp("models")
    stub_model(folder / "stub")
    shutil.copytree(tiny_image_model, folder / "digits")
    return folder


@pytest.fixture(scope="module")
def client(tmp_path_factory, models_dir):
    app = make_app(tmp_path_factory.mktemp("data"), models_dir, workers=1)
    with TestClient(app) as client:
        yield client


def submit(client, params=None, model="stub", seed=0, **kwargs):
    response = client.post("/v1/jobs", json={"model": model, "params": params or {}, "seed": seed}, **kwargs)
    assert response.status_code == 202, response.text
    return response.json()


def test_health_and_docs(client):
    health = client.get("/v1/health").json()
    assert health["status"] == "ok" and health["models"] == 2 and health["workers"] == 1
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events", "/v1/models"} <= set(paths)


def test_models_come_from_the_registry_with_parameters_and_schema(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert set(models) == {"stub", "digits"}
    assert models["stub"]["modality"] == STUB and models["digits"]["modality"] == "image"
    steps = next(p for p in models["digits"]["parameters"] if p["name"] == "steps")
    assert steps["minimum"] == 1 and steps["maximum"] == 1000 and steps["help"]
    assert models["stub"]["schema"]["properties"]["init_image"]["format"] == "binary"
    assert "model" not in models["digits"]  # no server paths
    assert client.get("/v1/models/stub").json()["name"] == "stub"
    assert client.get("/v1/models/nope").status_code == 404


def test_a_job_runs_and_serves_its_results_with_media_types(client):
    job = submit(client, {"steps": 2, "text": "abc"}, seed=5)
    assert job["state"] == "queued" and isinstance(job["position"], int) and job["seed"] == 5
    done = wait_for(client, job["id"])
    assert done["state"] == "succeeded", done
    assert done["progress"] == {"done": 2, "total": 2} and done["seed"] == 5
    assert done["params"] == {"steps": 2, "text": "abc"} and done["parameters"]["text"] == "abc"
    timings = done["timings"]
    assert timings["queued_at"] <= timings["started_at"] <= timings["finished_at"] and timings["seconds"] >= 0
    names = [r["name"] for r in done["results"]]
    assert names == ["values.jsonl", "record.json"]
    lines = client.get(done["results"][0]["url"])
    assert lines.status_code == 200 and lines.headers["content-type"].startswith("application/jsonl")
    assert len(lines.text.splitlines()) == 2
    record = client.get(f"/v1/jobs/{job['id']}/results/1")
    assert record.headers["content-type"] == "application/json" and record.json()["seed"] == 5


def test_image_results_are_pngs_with_parameters_and_the_same_seed_gives_the_same_bytes(client):
    params = {"n": 2, "steps": 1, "labels": ["3"], "sampler": "euler"}
    first, second = (wait_for(client, submit(client, params, model="digits", seed=11)["id"]) for _ in range(2))
    assert first["state"] == second["state"] == "succeeded"

    def contents(job):
        return [client.get(r["url"]).content for r in job["results"]]

    a, b = contents(first), contents(second)
    assert len(a) == 3 and a == b  # byte-identical files
    assert all(r["media_type"] == "image/png" for r in first["results"]) and a[0][:8] == b"\x89PNG\r\n\x1a\n"
    assert b'"seed": 11' in a[0] or b'"seed":11' in a[0]
    other = wait_for(client, submit(client, params, model="digits", seed=12)["id"])
    assert contents(other) != a


def test_a_null_seed_draws_a_random_seed_and_records_it(client):
    response = client.post("/v1/jobs", json={"model": "stub", "params": {"steps": 1}, "seed": None})
    assert response.status_code == 202
    job = wait_for(client, response.json()["id"])
    assert job["seed_was_random"] and 0 <= job["seed"] < 2**63 and job["parameters"]["seed"] == job["seed"]


def test_events_stream_progress_and_a_final_state(client):
    job = submit(client, {"steps": 4, "sleep": 0.05})
    with client.stream("GET", f"/v1/jobs/{job['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    events = [(block.split("\n")[0][len("event: "):], json.loads(block.split("\n")[1][len("data: "):]))
              for block in text.strip().split("\n\n") if block.startswith("event:")]
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and events[-1][1]["state"] == "succeeded"
    progress = [data["done"] for kind, data in events if kind == "progress"]
    assert progress and progress == sorted(progress) and progress[-1] == 4
    assert ("state", {"state": "succeeded", "position": None}) in events


def test_history_is_paginated_newest_first(client):
    ids = [submit(client, {"steps": 1})["id"] for _ in range(3)]
    for job_id in ids:
        wait_for(client, job_id)
    page = client.get("/v1/jobs?limit=2").json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2] and page["next"] == ids[1]
    older = client.get(f"/v1/jobs?limit=2&before={page['next']}").json()
    assert older["jobs"][0]["id"] == ids[0]
    everything = []
    cursor = None
    while True:
        url = "/v1/jobs?limit=3" + (f"&before={cursor}" if cursor else "")
        page = client.get(url).json()
        everything += [j["id"] for j in page["jobs"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(everything) == len(set(everything)) and set(ids) <= set(everything)


BAD_REQUESTS = [
    ({"model": "nope"}, 404, "unknown model 'nope'; known models: "),
    ({"model": "stub", "params": {"steps": 0}}, 422, "parameter 'steps': must be >= 1"),
    ({"model": "stub", "params": {"steps": 10**6}}, 422, "parameter 'steps': must be <= 500"),
    ({"model": "stub", "params": {"steps": "many"}}, 422, "parameter 'steps': must be an integer"),
    ({"model": "stub", "params": {"text": "x" * 21}}, 422, "parameter 'text': is 21 characters long; at most 20"),
    ({"model": "stub", "params": {"colour": "red"}}, 422, "parameter 'colour': is not a parameter"),
    ({"model": "stub", "params": [1, 2]}, 422, "params: "),
    ({"model": "stub", "seed": -1}, 422, "seed: "),
    ({"model": "stub", "seed": 2**63}, 422, "seed: "),
    ({"model": "stub", "seed": "7"}, 422, "seed: "),
    ({"model": "stub", "seed": 1.5}, 422, "seed: "),
    ({"model": "stub", "priority": 1}, 422, "priority: unknown field"),
    ({"params": {}}, 422, "model: required"),
    ({"model": "digits", "params": {"sampler": "magic"}}, 422, "parameter 'sampler': unknown sampler 'magic'"),
]


@pytest.mark.parametrize("body,status,message", BAD_REQUESTS)
def test_bad_requests_are_4xx_naming_the_problem(client, body, status, message):
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_malformed_json_and_wrong_content_are_4xx(client):
    response = client.post("/v1/jobs", content=b'{"model": "stub",', headers={"content-type": "application/json"})
    assert response.status_code == 400 and "malformed JSON" in response.json()["detail"]
    response = client.post("/v1/jobs", content=b"[1, 2]", headers={"content-type": "application/json"})
    assert response.status_code == 422
    response = client.post("/v1/jobs", content=b"model=stub", headers={"content-type": "text/plain"})
    assert 400 <= response.status_code < 500


def test_job_ids_are_validated_never_used_as_paths(client):
    for bad in ("abc", "..", "0" * 31 + "G", "%2e%2e%2fetc", "A" * 32):
        response = client.get(f"/v1/jobs/{bad}")
        assert response.status_code in (400, 404), (bad, response.status_code)
        assert "detail" in response.json()
    assert "32 lowercase hexadecimal" in client.get("/v1/jobs/abc").json()["detail"]
    assert client.get("/v1/jobs/" + "0" * 32).status_code == 404
    assert client.post("/v1/jobs/abc/cancel").status_code == 400
    assert client.get("/v1/jobs/abc/results/0").status_code == 400
    assert client.get("/v1/jobs/..%2F..%2Fjobs.sqlite/results/0").status_code in (400, 404)
    assert client.get("/v1/jobs?before=../x").status_code == 400
    assert client.get("/v1/jobs?before=" + "0" * 32).status_code == 404
    for query in ("limit=0", "limit=101", "limit=ten"):
        response = client.get(f"/v1/jobs?{query}")
        assert response.status_code == 422 and "limit" in response.json()["detail"]


def test_results_of_unfinished_jobs_and_bad_indexes_are_4xx(client):
    job = wait_for(client, submit(client, {"steps": 1})["id"])
    assert client.get(f"/v1/jobs/{job['id']}/results/2").status_code == 404
    assert "index 0 to 1" in client.get(f"/v1/jobs/{job['id']}/results/2").json()["detail"]
    assert client.get(f"/v1/jobs/{job['id']}/results/-1").status_code == 404
    assert client.get(f"/v1/jobs/{job['id']}/results/x").status_code == 422
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 409  # already succeeded
    failed = wait_for(client, submit(client, {"steps": 1, "fail": True})["id"])
    assert failed["state"] == "failed" and "parameter 'fail': asked to fail" in failed["error"]
    response = client.get(f"/v1/jobs/{failed['id']}/results/0")
    assert response.status_code == 409 and "failed" in response.json()["detail"]


def test_cancel_a_running_job_at_its_next_step_and_a_queued_one_leaves_it_running(client):
    running = submit(client, {"steps": 400, "sleep": 0.02})
    queued = submit(client, {"steps": 1})  # one worker: this one waits
    wait_for(client, running["id"], until=lambda j: j["state"] == "running" and j["progress"]["done"] >= 1)
    assert client.get(f"/v1/jobs/{queued['id']}").json()["state"] == "queued"
    response = client.post(f"/v1/jobs/{queued['id']}/cancel")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    time.sleep(0.3)
    still = client.get(f"/v1/jobs/{running['id']}").json()
    assert still["state"] == "running" and not still["cancel_requested"]
    before = still["progress"]["done"]
    time.sleep(0.3)
    assert client.get(f"/v1/jobs/{running['id']}").json()["progress"]["done"] > before  # still making progress
    response = client.post(f"/v1/jobs/{running['id']}/cancel")
    assert response.status_code == 200 and response.json()["cancel_requested"]
    done = wait_for(client, running["id"], timeout=10)
    assert done["state"] == "cancelled" and done["progress"]["done"] < 400 and done["results"] == []
    assert client.get(f"/v1/jobs/{queued['id']}").json()["state"] == "cancelled"
    assert client.post(f"/v1/jobs/{queued['id']}/cancel").status_code == 200  # cancelling twice is harmless


def test_checks_refuse_before_with_422_and_after_as_a_refused_job(client):
    def before(pipeline, params):
        if params["text"] == "forbidden":
            raise Refused("the text is on the block list", check="test-before")

    def after(pipeline, generation):
        if generation.parameters["text"] == "later":
            raise Refused("the output failed review", check="test-after")
        return generation

    removers = [add_check("before", before, modalities=(STUB,)), add_check("after", after)]
    try:
        response = client.post("/v1/jobs", json={"model": "stub", "params": {"text": "forbidden"}})
        assert response.status_code == 422 and response.json()["refused"]
        assert "the text is on the block list" in response.json()["detail"]
        job = wait_for(client, submit(client, {"text": "later", "steps": 1})["id"])
        assert job["state"] == "refused" and "the output failed review" in job["refusal"] and not job["results"]
        assert wait_for(client, submit(client, {"text": "fine", "steps": 1})["id"])["state"] == "succeeded"
    finally:
        for remove in removers:
            remove()


def test_image_uploads_are_base64_with_byte_and_pixel_limits(tmp_path, models_dir):
    app = make_app(tmp_path / "data", models_dir, workers=1, max_upload_bytes=2000, max_upload_pixels=64 * 64,
                   max_body_bytes=20000)
    with TestClient(app) as client:
        for image in (png_base64(12, 10), "data:image/png;base64," + png_base64(12, 10)):
            job = wait_for(client, submit(client, {"steps": 1, "init_image": image})["id"])
            assert job["state"] == "succeeded" and job["parameters"]["init_image_size"] == [12, 10]
            assert job["params"]["init_image"].startswith("uploads/")  # a server-made name, not client text

        def refused(value, status, message):
            response = client.post("/v1/jobs", json={"model": "stub", "params": {"init_image": value}})
            assert response.status_code == status, response.text
            assert message in response.json()["detail"] and response.json()["parameter"] == "init_image"

        refused("not base64!!", 422, "parameter 'init_image': not valid base64")
        refused(base64.b64encode(b"hello, not an image").decode(), 422, "not a readable image")
        refused(12, 422, "must be a base64-encoded image")
        refused("/etc/passwd", 422, "not valid base64")
        refused(png_base64(65, 64), 413, "the limit is 4096 pixels (--max-upload-pixels)")
        noisy = io.BytesIO()
        from PIL import Image
        import numpy as np

        Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(noisy, "PNG")
        refused(base64.b64encode(noisy.getvalue()).decode(), 413, "the upload limit is 2000 bytes (--max-upload-bytes)")
        response = client.post("/v1/jobs", json={"model": "stub", "params": {"text": "x" * 30000}})
        assert response.status_code == 413 and "--max-body-bytes" in response.json()["detail"]


def test_bearer_token_on_every_endpoint_but_health(tmp_path, models_dir):
    app = make_app(tmp_path / "data", models_dir, workers=1, token="s3cret")
    with TestClient(app) as client:
        assert client.get("/v1/health").status_code == 200
        job_url = "/v1/jobs/" + "0" * 32
        for method, url in (("GET", "/v1/models"), ("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", job_url),
                            ("GET", job_url + "/events"), ("POST", job_url + "/cancel"),
                            ("GET", job_url + "/results/0")):
            response = client.request(method, url, json={"model": "stub"} if method == "POST" else None)
            assert response.status_code == 401 and "bearer token" in response.json()["detail"], (method, url)
            assert response.headers["www-authenticate"].startswith("Bearer")
            wrong = client.request(method, url, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and "wrong bearer token" in wrong.json()["detail"]
        good = {"Authorization": "Bearer s3cret"}
        job = client.post("/v1/jobs", json={"model": "stub", "params": {"steps": 1}}, headers=good).json()
        assert wait_for(client, job["id"], headers=good)["state"] == "succeeded"


def test_a_full_queue_is_429_with_retry_after(tmp_path, models_dir):
    app = make_app(tmp_path / "data", models_dir, workers=0, max_queue=2)
    with TestClient(app) as client:
        first, second = submit(client), submit(client)
        assert (first["position"], second["position"]) == (0, 1)
        checked = []
        remove = add_check("before", lambda pipeline, params: checked.append(params), modalities=(STUB,))
        try:
            response = client.post("/v1/jobs", json={"model": "stub", "params": {}})
        finally:
            remove()
        assert response.status_code == 429 and "--max-queue 2" in response.json()["detail"]
        assert int(response.headers["retry-after"]) >= 1
        assert checked == []  # a full queue answers before the checks: clients retrying cost the workers little
        client.post(f"/v1/jobs/{first['id']}/cancel")
        assert client.get(f"/v1/jobs/{second['id']}").json()["position"] == 0
        assert client.post("/v1/jobs", json={"model": "stub", "params": {}}).status_code == 202


def test_results_are_stored_under_the_data_dir_per_job(client):
    job = wait_for(client, submit(client, {"steps": 1})["id"])
    folder = client.app.state.store.results_dir(job["id"])
    assert sorted(p.name for p in folder.iterdir()) == ["record.json", "values.jsonl"]
    digest = hashlib.sha256((folder / "values.jsonl").read_bytes()).hexdigest()
    assert hashlib.sha256(client.get(job["results"][0]["url"]).content).hexdigest() == digest


def test_shipped_models_start_with_text_to_image_and_leave_out_non_model_assets(tmp_path, monkeypatch):
    """Every asset folder with a ``model_config`` is served, the text-to-image model first; other assets (a
    classifier's weights) are neither served nor reported as broken models."""
    from noisecraft.service import models

    assets = tmp_path / "assets"
    for name, config in (("a_points", {"model_config": {"kind": "points"}}), ("shapes_t2i", {"model_config": {}}),
                         ("b_classifier", {"kind": "video_classifier"})):
        (assets / name).mkdir(parents=True)
        (assets / name / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(models.resources, "files", lambda package: tmp_path)
    assert [p.name for p in models.shipped_model_dirs()] == ["shapes_t2i", "a_points"]
