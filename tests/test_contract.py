"""The pipeline contract, run over every registered modality with its tiny model (noisecraft.protocol).

A modality passes by registering (noisecraft.registry) a pipeline and a ``tiny_model`` maker; nothing here names a
modality, so the modalities that land later are held to the same rules.
"""

from __future__ import annotations

import hashlib
import threading

import pytest
import torch

import noisecraft
from noisecraft import registry
from noisecraft.protocol import Cancelled, Generation, ParameterError, Pipeline, Refused, add_check

MODALITIES = [m for m in registry.modalities() if m.tiny_model]


@pytest.fixture(scope="module", params=MODALITIES, ids=lambda m: m.name)
def tiny(request, tmp_path_factory):
    """(modality, model folder) of a freshly made tiny model."""
    modality = request.param
    try:
        make = modality.resolve("tiny_model")
    except registry.MissingDependency as error:
        pytest.skip(str(error))
    folder = make(tmp_path_factory.mktemp(modality.name) / "model")
    return modality, folder


def _request(pipeline: Pipeline) -> dict:
    """A small valid request: the defaults, few steps, few items, and any required text."""
    names = {p.name: p for p in pipeline.parameters()}
    request = {"steps": 2} if "steps" in names else {}
    for count in ("n", "rows"):
        if count in names:
            request[count] = 3
    for param in names.values():
        if param.required and param.kind == "str":
            request[param.name] = "a red circle"
    return request


def _file_hashes(files) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_every_builtin_modality_is_registered_with_a_tiny_model():
    assert {"image", "tabular"} <= {m.name for m in MODALITIES}


def test_load_gives_the_registered_pipeline(tiny):
    modality, folder = tiny
    pipeline = noisecraft.load(folder)
    assert isinstance(pipeline, modality.resolve("pipeline")) and isinstance(pipeline, Pipeline)
    assert pipeline.modality == modality.name


def test_describe_lists_parameters_with_help_and_a_json_schema(tiny):
    _, folder = tiny
    pipeline = noisecraft.load(folder)
    described = pipeline.describe()
    assert described["parameters"] and all(p["help"] and p["kind"] for p in described["parameters"])
    schema = pipeline.json_schema()
    assert set(schema["properties"]) == {p["name"] for p in described["parameters"]}
    assert all("type" in prop for prop in schema["properties"].values())


def test_same_seed_gives_the_same_bytes_and_outputs_carry_their_parameters(tiny, tmp_path):
    _, folder = tiny
    pipeline = noisecraft.load(folder)
    request = _request(pipeline)
    first = pipeline.generate(request, seed=7)
    files_a = pipeline.save_outputs(first, tmp_path / "a")
    files_b = pipeline.save_outputs(pipeline.generate(request, seed=7), tmp_path / "b")
    assert files_a and _file_hashes(files_a) == _file_hashes(files_b)
    other = pipeline.save_outputs(pipeline.generate(request, seed=8), tmp_path / "c")
    assert _file_hashes(other) != _file_hashes(files_a)
    assert first.parameters["seed"] == 7 and "seconds" not in first.parameters
    assert any(b'"seed"' in f.read_bytes() or b"seed" in f.read_bytes() for f in files_a)


def test_progress_is_reported_and_cancel_stops_generation(tiny):
    _, folder = tiny
    pipeline = noisecraft.load(folder)
    calls = []
    pipeline.generate(_request(pipeline), seed=0, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1] and [d for d, _ in calls] == sorted(d for d, _ in calls)
    seen = []
    with pytest.raises(Cancelled):
        pipeline.generate(_request(pipeline), seed=0, progress=lambda done, total: seen.append(done),
                          cancel=lambda: len(seen) >= 1)
    assert len(seen) == 1  # stopped at the step after the cancel check said so
    with pytest.raises(Cancelled):  # cancelled before it starts: no step at all
        pipeline.generate(_request(pipeline), seed=0, cancel=lambda: True)


def test_bad_parameters_are_refused_naming_the_parameter(tiny):
    _, folder = tiny
    pipeline = noisecraft.load(folder)
    request = _request(pipeline)
    with pytest.raises(ParameterError, match="'no_such_option'"):
        pipeline.generate(request | {"no_such_option": 1})
    with pytest.raises(ParameterError, match="'steps'.*>= 1"):
        pipeline.generate(request | {"steps": 0})
    with pytest.raises(ParameterError, match="'steps'.*integer"):
        pipeline.generate(request | {"steps": "many"})
    with pytest.raises(ParameterError, match="'seed'"):
        pipeline.generate(request, seed=-1)


def test_concurrent_requests_match_sequential_ones(tiny, tmp_path):
    _, folder = tiny
    pipeline = noisecraft.load(folder)
    request = _request(pipeline)
    expected = [_file_hashes(pipeline.save_outputs(pipeline.generate(request, seed=s), tmp_path / f"s{s}"))
                for s in (1, 2)]
    results = {}

    def run(seed: int) -> None:
        results[seed] = _file_hashes(pipeline.save_outputs(pipeline.generate(request, seed=seed),
                                                           tmp_path / f"t{seed}"))

    threads = [threading.Thread(target=run, args=(s,)) for s in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[1], results[2]] == expected


def test_checks_run_before_and_after_every_generation(tiny):
    modality, folder = tiny
    pipeline = noisecraft.load(folder)
    request = _request(pipeline)

    def refuse(pipeline, params):
        raise Refused("the test refuses everything", check="test")

    remove = add_check("before", refuse, modalities=(modality.name,))
    try:
        with pytest.raises(Refused, match="the test refuses everything"):
            pipeline.generate(request)
    finally:
        remove()

    def note(pipeline, generation: Generation) -> Generation:
        generation.notes.append("checked")
        return generation

    remove = add_check("after", note)
    try:
        assert pipeline.generate(request).notes == ["checked"]
    finally:
        remove()
    assert pipeline.generate(request).notes == []


def test_training_twice_with_the_same_seed_gives_the_same_weights(tiny, tmp_path):
    """Network initialisation and training are seeded: a second tiny model trained the same way is bit-identical."""
    from safetensors.torch import load_file

    modality, folder = tiny
    again = modality.resolve("tiny_model")(tmp_path / "again")
    first, second = load_file(folder / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    different = [name for name in first if not torch.equal(first[name], second[name])]
    assert not different, f"{modality.name}: {len(different)} tensors differ, e.g. {different[:3]}"
