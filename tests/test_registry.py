"""The modality registry, the protocol's parameter checks, the device check and the CLI that reads the registry."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import noisecraft
from noisecraft import registry
from noisecraft.cli import build_app, main
from noisecraft.device import resolve_device
from noisecraft.protocol import Param, ParameterError

PACKAGE = Path(noisecraft.__file__).parent


@pytest.fixture(scope="module")
def tabular_model(tmp_path_factory):
    return registry.get("tabular").resolve("tiny_model")(tmp_path_factory.mktemp("tabular") / "model")


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    return registry.get("image").resolve("tiny_model")(tmp_path_factory.mktemp("image") / "model")


def test_load_reads_the_kind_of_any_registered_modality(tabular_model, image_model):
    from noisecraft.images.pipeline import ImagePipeline
    from noisecraft.tabular import TabularModel

    assert isinstance(noisecraft.load(tabular_model), TabularModel)  # was: "cannot load kind noisecraft.tabular"
    assert isinstance(noisecraft.load(image_model), ImagePipeline)
    rows = noisecraft.load(tabular_model).generate({"rows": 5, "steps": 2}, seed=0).items
    assert list(rows.columns) == ["size", "colour", "count"] and len(rows) == 5


def test_unknown_kinds_and_names_are_named(tmp_path, image_model):
    config = (image_model / "config.json").read_text().replace('"kind": "image"', '"kind": "hologram"')
    (tmp_path / "config.json").write_text(config)
    (tmp_path / "model.safetensors").write_bytes((image_model / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="kind 'hologram'.*it loads: image, noisecraft.tabular"):
        noisecraft.load(tmp_path)
    with pytest.raises(ValueError, match="unknown modality 'sound'; known: image, tabular"):
        registry.get("sound")


def test_register_refuses_taken_names_and_kinds_and_names_missing_extras():
    points = registry.Modality("points-test", "test", ("points-test",), "no_such_package_xyz.pipeline:Points",
                               extra="points")
    registry.register(points)
    try:
        with pytest.raises(ValueError, match="already registered"):
            registry.register(points)
        with pytest.raises(ValueError, match="kind 'image' already belongs to the image modality"):
            registry.register(registry.Modality("other", "test", ("image",), "x:y"))
        with pytest.raises(registry.MissingDependency, match=r"needs no_such_package_xyz.*noisecraft\[points\]"):
            points.resolve("pipeline")
        assert registry.for_kind("points-test") is points
    finally:
        registry.unregister("points-test")
    assert "points-test" not in {m.name for m in registry.modalities()}


@pytest.mark.parametrize("param, value, expected", [
    (Param("n", "int", 1, "count", 1, 10), 3, 3),
    (Param("n", "int", 1, "count", 1, 10), 4.0, 4),
    (Param("g", "float", 1.0, "scale", 0, 30), 2, 2.0),
    (Param("labels", "strings", None, "classes"), "7", ["7"]),
    (Param("labels", "strings", None, "classes"), [7, "cat"], ["7", "cat"]),
    (Param("s", "choice", "a", "pick", choices=("a", "b")), "b", "b"),
    (Param("flag", "bool", False, "on/off"), True, True),
    (Param("text", "str", None, "words", 1, 5), None, None),
])
def test_param_check_converts_valid_values(param, value, expected):
    assert param.check(value) == expected and type(param.check(value)) is type(expected)


@pytest.mark.parametrize("param, value, message", [
    (Param("n", "int", 1, "count", 1, 10), 0, "'n': must be >= 1, got 0"),
    (Param("n", "int", 1, "count", 1, 10), 11, "'n': must be <= 10, got 11"),
    (Param("n", "int", 1, "count", 1, 10), 2.5, "'n': must be an integer, got 2.5"),
    (Param("n", "int", 1, "count", 1, 10), True, "'n': must be an integer, got True"),
    (Param("g", "float", 1.0, "scale"), math.nan, "'g': must be a number"),
    (Param("g", "float", 1.0, "scale"), "3", "'g': must be a number, got '3'"),
    (Param("s", "choice", "a", "pick", choices=("a", "b")), "c", "'s': unknown s 'c'; choose one of a, b"),
    (Param("text", "str", None, "words", 1, 5), "toolong", "'text': is 7 characters long; at most 5"),
    (Param("text", "str", None, "words", required=True), None, "'text': is required"),
    (Param("flag", "bool", False, "on/off"), "yes", "'flag': must be true or false"),
])
def test_param_check_names_the_parameter(param, value, message):
    with pytest.raises(ParameterError) as error:
        param.check(value)
    assert message in str(error.value) and error.value.name == param.name


def test_param_json_schema():
    assert Param("n", "int", 4, "count", 1, 10).json_schema() == {
        "description": "count", "type": "integer", "default": 4, "minimum": 1, "maximum": 10}
    assert Param("x", "strings", None, "list").json_schema()["items"] == {"type": "string"}


def test_devices_are_checked_with_a_one_line_message():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' is not available.*--device cpu"):
            resolve_device("cuda")


def test_cli_groups_root_aliases_and_info_for_every_kind(tabular_model, image_model, capsys):
    runner, app = CliRunner(), build_app()
    main_help = runner.invoke(app, ["--help"]).output
    for command in ("image", "tabular", "train", "sample", "generate", "eval", "info", "demo"):
        assert command in main_help
    image_help = runner.invoke(app, ["image", "--help"]).output
    assert all(command in image_help for command in ("train", "sample", "generate", "eval"))
    for folder, expected in ((tabular_model, "modality: tabular"), (image_model, "modality: image")):
        result = runner.invoke(app, ["info", str(folder)])
        assert result.exit_code == 0, result.output
        assert expected in result.output and "parameters: " in result.output
        assert "generation parameters" in result.output and "steps (int; default" in result.output
        assert len(result.output.splitlines()) < 30  # a screenful, not the whole config


def test_cli_sample_alias_and_device_errors(image_model, tmp_path, capsys):
    for command in (["sample"], ["image", "sample"]):
        with pytest.raises(SystemExit) as stop:
            main(command + [str(image_model), "-n", "2", "--steps", "2", "-o", str(tmp_path / command[0])])
        assert stop.value.code == 0 and (tmp_path / command[0] / "sample_0001.png").is_file()
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as stop:
            main(["sample", str(image_model), "-n", "1", "--device", "cuda", "-o", str(tmp_path / "x")])
        assert stop.value.code == 2 and "not available" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main(["sample", str(image_model), "-n", "1", "--steps", "0", "-o", str(tmp_path / "y")])
    error = capsys.readouterr().err
    assert stop.value.code == 2 and "'steps': must be >= 1" in error and "sampling" not in error


def test_cli_keeps_the_traceback_of_real_bugs(monkeypatch):
    import noisecraft.model_info

    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(noisecraft.model_info, "describe_model_folder", broken)
    with pytest.raises(TypeError, match="a bug"):  # not turned into "error: a bug" and exit status 2
        main(["info", "."])


def _imports(path: Path) -> set[str]:
    """The noisecraft modules a file imports, at module level or inside functions."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-node.level])
            names.add(f"{package}.{node.module}" if node.module else package)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("noisecraft")}


def test_no_module_level_imports_run_in_a_circle():
    modules = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in PACKAGE.rglob("*.py")}
    # A package's __init__ re-exporting its own modules is Python's normal layout: those edges are left out.
    graph = {name: {m for m in _imports(path) if m in modules and m != name and not m.startswith(name + ".")}
             for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for child in graph[node]:
            if state.get(child) == 1:
                cycle = path[path.index(child):] + [child]
                pytest.fail("modules import each other in a circle (even inside functions): " + " -> ".join(cycle))
            elif child not in state:
                visit(child, path + [child])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
