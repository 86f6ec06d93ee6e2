"""The shapes world: procedural captioned images, an analyzer that reads them back, and a GenEval-style benchmark."""

from .analyzer import DetectedObject, analyze, check, diagnose, matches, objects_of
from .benchmark import (BenchmarkPrompt, benchmark_prompts, format_table, load_results, render_prompts, run_benchmark,
                        save_results, score)
from .world import (ObjectSpec, PromptSpec, Scene, ShapeObject, ShapesDataset, ShapesWorldConfig, caption, describe,
                    export_shapes, format_prompt, is_held_out, parse_prompt, render, sample_scene, scene_from_spec,
                    vocabulary)

__all__ = [
    "BenchmarkPrompt", "DetectedObject", "ObjectSpec", "PromptSpec", "Scene", "ShapeObject", "ShapesDataset",
    "ShapesWorldConfig", "analyze", "benchmark_prompts", "caption", "check", "describe", "diagnose", "export_shapes",
    "format_prompt", "format_table", "is_held_out", "load_results", "matches", "objects_of", "parse_prompt", "render",
    "render_prompts", "run_benchmark", "sample_scene", "save_results", "scene_from_spec", "score", "vocabulary",
]
