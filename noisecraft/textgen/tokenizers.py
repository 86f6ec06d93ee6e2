"""Tokenizers of the text modality: characters (the default) and byte-level BPE, saved as JSON with the model.

Both number the corpus's tokens from 0 and append their special tokens after them, so a special token is never
matched in text: a corpus that contains the string ``"<eos>"`` round-trips like any other text.

- :class:`CharTokenizer`: one token per Unicode character of the training corpus (sorted), then ``<pad>``,
  ``<eos>`` and ``<unk>``. ``encode(text)`` refuses a character it does not know with an error that names it (a
  prompt or template of a user); ``encode(text, strict=False)`` maps it to ``<unk>`` instead (scoring held-out text,
  which may hold a character the training corpus lacks). Round trip exact on text of known characters.
- :class:`BPETokenizer`: byte-level BPE (GPT-2's byte-to-unicode alphabet, so every byte sequence has a spelling)
  trained on the corpus with the ``tokenizers`` library, then ``<pad>`` and ``<eos>``. Round trip exact on any
  UTF-8 text; decoding a token sequence that cuts a multi-byte character shows U+FFFD there.

The mask token of masked diffusion is not a tokenizer token: it is ``vocab_size`` (one past the last special).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from noisecraft.training.checkpoint import atomic_write_bytes

TOKENIZER_FILE = "tokenizer.json"
PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
TOKENIZER_KINDS = ("char", "bpe")
FORMAT = "noisecraft.textgen.tokenizer/1"


def _show(char: str) -> str:
    """A character as a user can read it in an error message: 'x', or its code point when invisible."""
    return repr(char) if char.isprintable() and not char.isspace() or char == " " else f"U+{ord(char):04X} {char!r}"


class UnknownCharacters(ValueError):
    """Text holds characters the character tokenizer's vocabulary lacks; ``characters`` lists them."""

    def __init__(self, characters: Sequence[str], *, what: str = "the text"):
        shown = ", ".join(_show(c) for c in characters[:10]) + (" ..." if len(characters) > 10 else "")
        super().__init__(f"{what} holds {len(characters)} character(s) the model's character vocabulary does not "
                         f"know: {shown}; the model can only read and write the characters of its training corpus")
        self.characters = list(characters)


class Tokenizer:
    """What both tokenizers share: ids of the specials, vocab_size (without the mask), JSON save/load."""

    kind: str = ""
    pad_id: int
    eos_id: int
    vocab_size: int  # every token id incl. the specials; the mask id of diffusion is vocab_size

    def encode(self, text: str, *, strict: bool = True) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        raise NotImplementedError

    def encode_documents(self, documents: Iterable[str], *, strict: bool = True) -> list[int]:
        """The token stream of ``documents`` with ``<eos>`` after each one (document boundaries kept)."""
        stream: list[int] = []
        for document in documents:
            stream.extend(self.encode(document, strict=strict))
            stream.append(self.eos_id)
        return stream

    @property
    def special_ids(self) -> set[int]:
        return {self.pad_id, self.eos_id}

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/tokenizer.json`` atomically; returns its path."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / TOKENIZER_FILE
        atomic_write_bytes(path, (json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n").encode("utf-8"))
        return path

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "Tokenizer":
        found = data.get("format") if isinstance(data, dict) else None
        if found != FORMAT:
            raise ValueError(f"not a noisecraft text tokenizer (format {found!r}, expected {FORMAT!r})")
        kind = data.get("kind")
        if kind == "char":
            return CharTokenizer(data["chars"])
        if kind == "bpe":
            return BPETokenizer.from_json(json.dumps(data["bpe"]))
        raise ValueError(f"unknown tokenizer kind {kind!r}; this version knows {', '.join(TOKENIZER_KINDS)}")


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer saved at ``path`` (a ``tokenizer.json`` file or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no text tokenizer at {path}: a text model folder holds {TOKENIZER_FILE}, written by "
                                f"`noisecraft text fit`") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); the file is corrupt") from None
    try:
        return Tokenizer.from_dict(data)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None


class CharTokenizer(Tokenizer):
    """One token per character of the corpus (ids 0..C-1, in sorted order), then <pad>, <eos>, <unk>."""

    kind = "char"

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("a character vocabulary holds single characters")
        if len(set(chars)) != len(chars):
            raise ValueError("a character vocabulary holds each character once")
        self.chars = chars
        self.index = {c: i for i, c in enumerate(chars)}
        self.pad_id, self.eos_id, self.unk_id = len(chars), len(chars) + 1, len(chars) + 2
        self.vocab_size = len(chars) + 3

    @classmethod
    def train(cls, documents: Iterable[str]) -> "CharTokenizer":
        """The vocabulary of every character in ``documents``."""
        seen: set[str] = set()
        for document in documents:
            seen.update(document)
        if not seen:
            raise ValueError("cannot build a character vocabulary from an empty corpus")
        return cls(sorted(seen))

    @property
    def special_ids(self) -> set[int]:
        return {self.pad_id, self.eos_id, self.unk_id}

    def unknown(self, text: str) -> list[str]:
        """The characters of ``text`` outside the vocabulary, each once, in order of appearance."""
        return list(dict.fromkeys(c for c in text if c not in self.index))

    def encode(self, text: str, *, strict: bool = True, what: str = "the text") -> list[int]:
        if strict:
            unknown = self.unknown(text)
            if unknown:
                raise UnknownCharacters(unknown, what=what)
        index, unk = self.index, self.unk_id
        return [index.get(c, unk) for c in text]

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        names = {self.pad_id: PAD, self.eos_id: EOS, self.unk_id: UNK}
        out = []
        for i in ids:
            i = int(i)
            if i < len(self.chars):
                out.append(self.chars[i])
            elif not skip_special:
                out.append(names.get(i, "<mask>"))
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "kind": "char", "chars": self.chars, "specials": [PAD, EOS, UNK]}


class BPETokenizer(Tokenizer):
    """Byte-level BPE from the ``tokenizers`` library (ids 0..V-1), then <pad> and <eos> (ids V, V+1)."""

    kind = "bpe"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.base_size = tokenizer.get_vocab_size(with_added_tokens=False)
        self.pad_id, self.eos_id = self.base_size, self.base_size + 1
        self.vocab_size = self.base_size + 2

    @classmethod
    def train(cls, documents: Iterable[str], *, vocab_size: int = 1024) -> "BPETokenizer":
        """Learn byte-level BPE merges on ``documents`` up to ``vocab_size`` tokens (at least the 256 bytes)."""
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not 257 <= vocab_size <= 1_000_000:
            raise ValueError(f"bpe_vocab_size must be an integer in [257, 1000000] (256 bytes + merges), "
                             f"got {vocab_size!r}")
        tokenizer = HFTokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
        tokenizer.train_from_iterator(list(documents), trainer=trainer)
        return cls(tokenizer)

    @classmethod
    def from_json(cls, text: str) -> "BPETokenizer":
        from tokenizers import Tokenizer as HFTokenizer

        return cls(HFTokenizer.from_str(text))

    def encode(self, text: str, *, strict: bool = True, what: str = "the text") -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids) if text else []

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        ids = [int(i) for i in ids]
        if skip_special:
            return self.tokenizer.decode([i for i in ids if i < self.base_size], skip_special_tokens=False)
        out, run = [], []
        for i in ids + [-1]:
            if 0 <= i < self.base_size:
                run.append(i)
                continue
            if run:
                out.append(self.tokenizer.decode(run, skip_special_tokens=False))
                run = []
            if i >= 0:
                out.append({self.pad_id: PAD, self.eos_id: EOS}.get(i, "<mask>"))
        return "".join(out)

    def token_text(self, token_id: int) -> str:
        return self.decode([token_id])

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "kind": "bpe", "specials": [PAD, EOS], "bpe": json.loads(self.tokenizer.to_str())}


def train_tokenizer(kind: str, documents: Sequence[str], *, bpe_vocab_size: int = 1024) -> Tokenizer:
    """A new tokenizer of ``kind`` ("char" or "bpe") fitted to ``documents``."""
    if kind == "char":
        return CharTokenizer.train(documents)
    if kind == "bpe":
        return BPETokenizer.train(documents, vocab_size=bpe_vocab_size)
    raise ValueError(f"unknown tokenizer {kind!r}; choose one of {', '.join(TOKENIZER_KINDS)}")
