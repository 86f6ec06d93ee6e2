"""Text generation by masked (absorbing-state) diffusion: the "text" modality (``noisecraft text ...``).

Not to be confused with :mod:`noisecraft.text`, the prompt encoders of text-to-image.

tokenizers.py: characters (default) and byte-level BPE, saved as ``tokenizer.json`` in the model folder.
data.py: UTF-8 corpora (a file or a folder), Gutenberg boilerplate stripping, the default Shakespeare corpus with
two held-out plays, token windows. training.py: ``train_text(config)`` over the shared Trainer and
``make_tiny_model``. pipeline.py: ``TextPipeline`` (the pipeline protocol: free text, prefix, infill templates).
evaluate.py: bits per character on held-out text and sampling speed. cli.py: ``noisecraft text fit | sample |
evaluate``. The model, loss, sampler and likelihood are the shared sequence layer's (:mod:`noisecraft.sequence`).
"""

from .data import HELD_OUT_PLAYS, PLAYS, load_corpus, read_corpus
from .tokenizers import BPETokenizer, CharTokenizer, load_tokenizer

__all__ = ["BPETokenizer", "CharTokenizer", "HELD_OUT_PLAYS", "PLAYS", "load_corpus", "load_tokenizer",
           "read_corpus"]
