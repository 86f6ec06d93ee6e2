"""Text encoders for text-to-image diffusion (see ``encoders.py``)."""

from .encoders import (LearnedTokenEncoder, MiniLMEncoder, TextEncoder, make_text_encoder, masked_mean, pad_tokens,
                       validate_prompt)

__all__ = ["LearnedTokenEncoder", "MiniLMEncoder", "TextEncoder", "make_text_encoder", "masked_mean", "pad_tokens",
           "validate_prompt"]
