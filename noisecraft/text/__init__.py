"""Text encoders and prompt syntax for text-to-image diffusion (see ``encoders.py`` and ``prompts.py``)."""

from .encoders import (LearnedTokenEncoder, MiniLMEncoder, TextEncoder, is_trainable, make_text_encoder, masked_mean,
                       pad_tokens, shared_text_encoder, validate_prompt)
from .prompts import Concept, format_composition, parse_composition

__all__ = ["Concept", "LearnedTokenEncoder", "MiniLMEncoder", "TextEncoder", "format_composition", "is_trainable",
           "make_text_encoder", "masked_mean", "pad_tokens", "parse_composition", "shared_text_encoder",
           "validate_prompt"]
