"""The shared sequence layer: MDLM masked diffusion (Sahoo et al. 2024) over token sequences, for the text and
molecule modalities.

model.py: ``SequenceModelSpec`` (the ``model_config``), ``SequenceDiffusionModel`` (``logits(x_t, t, **cond)``, the
SUBS denoiser around a registered network, by default the "sequence_transformer"), ``make_loss_fn`` (the NELBO per
sequence for the shared Trainer, with condition dropout). sampling.py: ``generate_tokens`` (prefix, infill, top-p,
temperature, classifier-free guidance, exact caching), ``truncate_at_eos``. likelihood.py: ``nelbo`` (bits per token
with its standard error).
"""

from .likelihood import nelbo
from .model import SequenceDiffusionModel, SequenceModelSpec, make_loss_fn, make_sequence_spec
from .sampling import generate_tokens, truncate_at_eos

__all__ = [
    "SequenceDiffusionModel",
    "SequenceModelSpec",
    "generate_tokens",
    "make_loss_fn",
    "make_sequence_spec",
    "nelbo",
    "truncate_at_eos",
]
