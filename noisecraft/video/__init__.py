"""The video modality: world.py (the moving-shapes world: clips, captions, motion analyser); the space-time U-Net
lives in ``noisecraft.nets.spacetime``."""

from .world import (Clip, MeasuredMotion, MotionSpec, MovingObject, MovingShapesDataset, VideoPromptSpec,
                    VideoWorldConfig, analyze_clip, caption, check_clip, clip_from_spec, clip_matches, describe,
                    format_prompt, is_held_out, make_example, parse_prompt, render_clip, sample_clip)

__all__ = [
    "Clip", "MeasuredMotion", "MotionSpec", "MovingObject", "MovingShapesDataset", "VideoPromptSpec",
    "VideoWorldConfig", "analyze_clip", "caption", "check_clip", "clip_from_spec", "clip_matches", "describe",
    "format_prompt", "is_held_out", "make_example", "parse_prompt", "render_clip", "sample_clip",
]
