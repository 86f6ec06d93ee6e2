"""Shared pieces of the service tests (no tests here): a stub modality the tests register like any plug-in, model
folders, and an app factory.

The stub modality ("svc-stub") is registered through the public registry only, so every test that uses it also
shows that the service serves a modality it has never heard of. Its pipeline sleeps ``sleep`` seconds per step
(to cancel mid-run), takes an image parameter (uploads) and writes JSON lines + JSON (media types).
"""

from __future__ import annotations

import base64
import io
import json
import random
import time
from pathlib import Path

import pytest

from noisecraft import registry
from noisecraft.protocol import Generation, Param, ParameterError, Pipeline, StepReporter

STUB = "svc-stub"


class StubPipeline(Pipeline):
    modality = STUB

    @classmethod
    def load(cls, path, *, device="cpu", use_ema=True):
        pipeline = cls()
        pipeline.source = str(path)
        return pipeline

    def parameters(self):
        return [
            Param("steps", "int", 3, "Steps.", 1, 500),
            Param("text", "str", "hi", "Text to echo.", maximum=20),
            Param("sleep", "float", 0.0, "Seconds per step.", 0.0, 1.0),
            Param("fail", "bool", False, "Fail during generation (a parameter error found late)."),
            Param("init_image", "image", None, "An image whose size is recorded."),
        ]

    def _generate(self, params, *, seed, progress, cancel):
        reporter = StepReporter(params["steps"], progress, cancel)
        reporter.check_cancel()
        rng = random.Random(seed)
        values = []
        for _ in range(params["steps"]):
            time.sleep(params["sleep"])
            if params["fail"]:
                raise ParameterError("fail", "asked to fail")
            values.append(rng.random())
            reporter.step()
        record = {k: v for k, v in params.items() if k != "init_image"} | {"seed": seed}
        if params["init_image"] is not None:
            from PIL import Image

            with Image.open(params["init_image"]) as image:
                record["init_image_size"] = list(image.size)
        return Generation(values, record)

    def save_outputs(self, generation, out_dir):
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        lines, record = out_dir / "values.jsonl", out_dir / "record.json"
        lines.write_text("".join(json.dumps({"value": v}) + "\n" for v in generation.items))
        record.write_text(json.dumps(generation.parameters, sort_keys=True))
        return [lines, record]


def stub_model(folder: Path) -> Path:
    """A model folder of the stub modality (config.json + an empty weights file)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_config": {"kind": STUB}, "train_config": {}, "step": 0}))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def stub_registered():
    registry.register(registry.Modality(name=STUB, summary="test stub", kinds=(STUB,),
                                        pipeline="test_service_support:StubPipeline"), replace=True)
    yield
    registry.unregister(STUB)


@pytest.fixture(scope="session")
def tiny_image_model(tmp_path_factory) -> Path:
    """A tiny class-conditional digits model (the image modality's tiny_model maker; seconds)."""
    make = registry.get("image").resolve("tiny_model")
    return make(tmp_path_factory.mktemp("tiny") / "digits")


def make_app(data_dir, models_dir, **options):
    from noisecraft.service.app import ServiceConfig, create_app

    config = ServiceConfig(data_dir=Path(data_dir), models_dir=Path(models_dir), include_shipped=False,
                           poll=0.05, events_poll=0.02, **options)
    return create_app(config)


def png_base64(width=8, height=8, color=(255, 0, 0)) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def wait_for(client, job_id, states=("succeeded", "failed", "cancelled", "refused"), timeout=60.0,
             headers=None, until=None) -> dict:
    """Poll GET /v1/jobs/{id} until its state is in ``states`` (or ``until(job)``)."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if (until(job) if until else job["state"] in states):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s: {job}")
        time.sleep(0.02)
