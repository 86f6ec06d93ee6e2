"""Training a text model: corpus -> tokenizer -> token windows -> ``SequenceDiffusionModel`` -> the shared Trainer.

``train_text({"corpus": "shakespeare", "out_dir": "runs/text", "minutes": 30})`` writes into ``out_dir`` the
tokenizer (``tokenizer.json``) and, through the Trainer, ``config.json`` whose ``model_config`` is the
``SequenceModelSpec`` (kind ``"text"``; ``extra`` names the tokenizer file and records the corpus: its source,
characters and held-out documents, and the window), the weights, the EMA weights, checkpoints and logs. A killed
run continues with ``resume=True`` (``noisecraft text fit ... --resume``): same corpus, tokenizer and settings, the
saved tokenizer reused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from noisecraft.training import Trainer
from noisecraft.training.runs import check_positive_ints, run_checkpoint, train_config_for, with_defaults

from .data import DEFAULT_CORPUS, Corpus, Document, TokenWindows, load_corpus
from .pipeline import MODEL_KIND
from .tokenizers import TOKENIZER_FILE, TOKENIZER_KINDS, Tokenizer, load_tokenizer, train_tokenizer

PRESETS = ("tiny", "small", "base")
DEFAULTS: dict[str, Any] = {
    "corpus": DEFAULT_CORPUS, "out_dir": None, "tokenizer": "char", "bpe_vocab_size": 1024, "length": 256,
    "stride": None, "preset": "small", "net": {}, "steps": None, "minutes": None, "batch_size": 64, "lr": 3e-4,
    "seed": 0, "train": {},
}


def _check_config(config: dict[str, Any]) -> dict[str, Any]:
    config = with_defaults(config, DEFAULTS, what="text training")
    if config["tokenizer"] not in TOKENIZER_KINDS:
        raise ValueError(f"unknown tokenizer {config['tokenizer']!r}; choose one of {', '.join(TOKENIZER_KINDS)}")
    if config["preset"] not in PRESETS:
        raise ValueError(f"unknown preset {config['preset']!r}; choose one of {', '.join(PRESETS)}")
    check_positive_ints(config, ("length", "batch_size"))
    check_positive_ints(config, ("stride",), optional=True)
    return config


def _tokenizer_for(config: dict[str, Any], corpus: Corpus, out_dir: Path, *, resume: bool) -> Tokenizer:
    """A new tokenizer fitted to the training documents, or, when resuming, the one the run saved."""
    if resume:
        path = out_dir / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"cannot resume: {out_dir} holds no {TOKENIZER_FILE} (no text run was started "
                                    f"there); start without --resume")
        tokenizer = load_tokenizer(path)
        if tokenizer.kind != config["tokenizer"]:
            raise ValueError(f"cannot resume: the run in {out_dir} uses the {tokenizer.kind} tokenizer, not "
                             f"{config['tokenizer']}")
        return tokenizer
    return train_tokenizer(config["tokenizer"], corpus.texts, bpe_vocab_size=config["bpe_vocab_size"])


def build_spec(config: dict[str, Any], tokenizer: Tokenizer, corpus: Corpus, stride: int):
    """The ``SequenceModelSpec`` of a text model (kind "text") for ``config`` and ``tokenizer``."""
    from noisecraft.nets.registry import network_config
    from noisecraft.sequence.model import SequenceModelSpec

    length = config["length"]
    # The denoiser does not see t (MDLM's text setting, Sahoo et al. 2024 Sec. 3.5): sampling may then reuse the
    # logits of steps that reveal nothing (exact caching); {"net": {"time_conditioning": "adaln"}} changes it.
    net = network_config("sequence_transformer", config["preset"],
                         **{"time_conditioning": "none", **config["net"], "vocab_size": tokenizer.vocab_size,
                            "max_length": length})
    net = net.to_dict() if hasattr(net, "to_dict") else dict(net)
    extra = {"tokenizer": TOKENIZER_FILE, "tokenizer_kind": tokenizer.kind,
             "corpus": {**corpus.provenance, "training_documents": len(corpus.documents),
                        "held_out_documents": [d.name for d in corpus.held_out]},
             "window": {"length": length, "stride": stride}}
    return SequenceModelSpec(kind=MODEL_KIND, network="sequence_transformer", net=net,
                             vocab_size=tokenizer.vocab_size, mask_id=tokenizer.vocab_size, pad_id=tokenizer.pad_id,
                             eos_id=tokenizer.eos_id, max_length=length, extra=extra)


def train_on_corpus(corpus: Corpus, config: dict[str, Any], *, resume: bool = False, progress: bool = True):
    """Train on an already read ``corpus`` with a checked ``config`` (see :func:`train_text`)."""
    from noisecraft.sequence.model import SequenceDiffusionModel, make_loss_fn

    out_dir = Path(config["out_dir"])
    checkpoint = run_checkpoint(out_dir, resume=resume)  # before anything is written into the run folder
    tokenizer = _tokenizer_for(config, corpus, out_dir, resume=resume)
    length = config["length"]
    stride = config["stride"] or max(1, length // 4)
    windows = TokenWindows(tokenizer.encode_documents(corpus.texts), length, stride=stride,
                           what=f"the training corpus ({corpus.provenance.get('corpus', 'text')})")
    spec = build_spec(config, tokenizer, corpus, stride)
    train_config = train_config_for(config, checkpoint=checkpoint)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        tokenizer.save(out_dir)
    torch.manual_seed(config["seed"])  # network initialisation: the same seed gives the same model
    model = SequenceDiffusionModel(spec)
    trainer = Trainer(model, make_loss_fn(spec), windows, train_config, out_dir, model_config=spec.to_dict(),
                      collate_fn=windows.collate, progress=progress)
    return trainer.fit(resume=resume)


def train_text(config: dict[str, Any], *, resume: bool = False, progress: bool = True):
    """The registry's training entry (``noisecraft.train(config, modality="text")``); returns the Trainer's result
    (``.step``, ``.loss``, ``.out_dir``, ...).

    ``config`` keys: ``out_dir`` (required), ``corpus`` (a UTF-8 .txt file or folder, or "shakespeare", the
    default), ``tokenizer`` ("char" or "bpe"), ``bpe_vocab_size`` (1024), ``length`` (window in tokens, 256),
    ``stride`` (window starts, default length // 4), ``preset`` (tiny, small, base), ``net`` (network overrides),
    ``steps`` or ``minutes``, ``batch_size`` (64), ``lr`` (3e-4), ``seed`` and ``train`` (any TrainConfig field).
    """
    config = _check_config(config)
    return train_on_corpus(load_corpus(config["corpus"]), config, resume=resume, progress=progress)


TINY_TEXT = """Twinkle, twinkle, little star,
How I wonder what you are!
Up above the world so high,
Like a diamond in the sky.
When the blazing sun is gone,
When he nothing shines upon,
Then you show your little light,
Twinkle, twinkle, all the night.
"""


def make_tiny_model(out_dir: str | Path) -> Path:
    """A tiny character model of a nursery rhyme, trained a few steps (seconds): for the contract test."""
    corpus = Corpus([Document("twinkle", TINY_TEXT * 3)], [], {"corpus": "built-in tiny text",
                                                               "characters": 3 * len(TINY_TEXT)})
    config = _check_config({"out_dir": str(out_dir), "length": 32, "preset": "tiny", "steps": 4, "batch_size": 8,
                            "lr": 1e-3, "train": {"checkpoint_every": 0, "log_every": 2}})
    train_on_corpus(corpus, config, progress=False)
    return Path(out_dir)
