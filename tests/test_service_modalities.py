"""Every registered modality is served with no change to the service: its tiny model is listed by GET /v1/models
with its parameters, and a small job through POST /v1/jobs succeeds with downloadable results (like
tests/test_contract.py, nothing here names a modality)."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from test_service_support import make_app, wait_for  # noqa: E402

from noisecraft import registry  # noqa: E402

MODALITIES = [m for m in registry.modalities() if m.tiny_model]


def _request(parameters: list[dict]) -> dict:
    """A small valid request: few steps, few items, any required text (as the contract test makes it)."""
    names = {p["name"]: p for p in parameters}
    request = {"steps": 2} if "steps" in names else {}
    for count in ("n", "rows"):
        if count in names:
            request[count] = 2
    for param in names.values():
        if param.get("required") and param["kind"] == "str":
            request[param["name"]] = "a red circle"
    return request


@pytest.mark.parametrize("modality", MODALITIES, ids=lambda m: m.name)
def test_each_registered_modality_is_served(modality, tmp_path):
    try:
        make = modality.resolve("tiny_model")
    except registry.MissingDependency as error:
        pytest.skip(str(error))
    make(tmp_path / "models" / "tiny")
    with TestClient(make_app(tmp_path / "data", tmp_path / "models", workers=1)) as client:
        (model,) = client.get("/v1/models").json()["models"]
        assert model["name"] == "tiny" and model["modality"] == modality.name
        assert set(model["schema"]["properties"]) == {p["name"] for p in model["parameters"]}
        response = client.post("/v1/jobs", json={"model": "tiny", "params": _request(model["parameters"]),
                                                 "seed": 3})
        assert response.status_code == 202, response.text
        job = wait_for(client, response.json()["id"], timeout=120)
        assert job["state"] == "succeeded", job
        assert job["results"] and job["parameters"]["seed"] == 3
        for result in job["results"]:
            file = client.get(result["url"])
            assert file.status_code == 200 and file.content
            assert file.headers["content-type"].split(";")[0] == result["media_type"].split(";")[0]
        bad = client.post("/v1/jobs", json={"model": "tiny", "params": {"no_such_option": 1}})
        assert bad.status_code == 422 and "'no_such_option'" in bad.json()["detail"]
