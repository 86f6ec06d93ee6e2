"""Molecule tokenizers: SMILES split into atoms and bonds by a regular expression, or SELFIES split into its bracketed
symbols (the ``selfies`` package); both saved as ``tokenizer.json`` with the model.

- SMILES (:class:`SmilesTokenizer`): the atom-level regular expression of Schwaller et al. 2019 ("Molecular
  Transformer", ACS Cent. Sci.): a bracket atom (``[nH]``, ``[C@@H]``, ``[O-]``, ``[13CH3]``) is one token, so are
  the two-letter organic-subset elements ``Cl`` and ``Br``, a two-digit ring bond ``%12``, every other character one
  token (atoms ``C N O S P F I B c n o s p b``, bonds ``- = # $ : / \\``, branches, ring digits, ``.``, ``*``).
  ``"".join(tokens) == smiles`` always holds for text the expression covers; anything else is an error naming the
  character and its position.
- SELFIES (:class:`SelfiesTokenizer`, Krenn et al. 2020): SMILES -> SELFIES with ``selfies.encoder``, split into
  symbols with ``selfies.split_selfies``; decoding joins the symbols and ``selfies.decoder`` gives SMILES back. Every
  symbol string decodes to a molecule (SELFIES' robustness), so sampled SELFIES are valid by construction (an empty
  decode, from a sample that is all padding, is the one failure).

Token ids: the vocabulary's tokens (sorted) from 0, then ``<pad>`` and ``<eos>``. A sequence is the tokens, one
``<eos>``, then ``<pad>`` up to the model's length; the mask of masked diffusion is ``vocab_size``, not a token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from noisecraft.training.checkpoint import atomic_write_bytes

TOKENIZER_FILE = "tokenizer.json"
PAD, EOS = "<pad>", "<eos>"
REPRESENTATIONS = ("smiles", "selfies")
FORMAT = "noisecraft.molecules.tokenizer/1"

# Schwaller et al. 2019 (Molecular Transformer), with % ring bonds and the remaining SMILES bond/atom characters.
SMILES_PATTERN = (r"(\[[^\]]+\]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$"
                  r"|%[0-9]{2}|[0-9])")
_SMILES_RE = re.compile(SMILES_PATTERN)


class TokenizeError(ValueError):
    """A molecule string that the tokenizer cannot split or a token it does not know."""


def split_smiles(smiles: str) -> list[str]:
    """``smiles`` as atom-level tokens; an error naming the first character no token covers."""
    tokens, position = [], 0
    for match in _SMILES_RE.finditer(smiles):
        if match.start() != position:
            break
        tokens.append(match.group(0))
        position = match.end()
    if position != len(smiles):
        raise TokenizeError(f"cannot split SMILES {smiles!r} into atoms: character {smiles[position]!r} at position "
                            f"{position} is not SMILES")
    return tokens


def split_selfies(selfies_string: str) -> list[str]:
    import selfies

    tokens = list(selfies.split_selfies(selfies_string))
    if "".join(tokens) != selfies_string:
        raise TokenizeError(f"{selfies_string!r} is not a sequence of SELFIES symbols")
    return tokens


def smiles_to_selfies(smiles: str) -> str:
    import selfies

    try:
        return selfies.encoder(smiles)
    except selfies.EncoderError as error:
        raise TokenizeError(f"SELFIES cannot encode {smiles!r}: {error}") from None


class MoleculeTokenizer:
    """Vocabulary of one representation; subclasses define how a SMILES becomes symbols and back."""

    representation: str = ""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = list(tokens)
        if len(set(self.tokens)) != len(self.tokens) or PAD in self.tokens or EOS in self.tokens:
            raise ValueError("a molecule vocabulary lists each token once and never <pad> / <eos>")
        self.index = {token: i for i, token in enumerate(self.tokens)}
        self.pad_id, self.eos_id = len(self.tokens), len(self.tokens) + 1

    @property
    def vocab_size(self) -> int:
        """Every token id incl. ``<pad>`` and ``<eos>``; the mask id of diffusion is ``vocab_size``."""
        return len(self.tokens) + 2

    # --- representation-specific ---
    def symbols(self, smiles: str) -> list[str]:
        """The symbols of a (canonical) SMILES in this representation."""
        raise NotImplementedError

    def to_smiles(self, text: str) -> str:
        """A decoded symbol string back to SMILES (SMILES: itself; SELFIES: ``selfies.decoder``)."""
        raise NotImplementedError

    # --- shared ---
    @classmethod
    def fit(cls, smiles: Iterable[str]) -> "MoleculeTokenizer":
        """A tokenizer whose vocabulary is every symbol of ``smiles`` (sorted)."""
        probe = cls([])
        vocabulary: set[str] = set()
        for item in smiles:
            vocabulary.update(probe.symbols(item))
        return cls(sorted(vocabulary))

    def encode(self, smiles: str) -> list[int]:
        """Token ids of ``smiles`` (without ``<eos>``); a symbol outside the vocabulary is an error naming it."""
        symbols = self.symbols(smiles)
        unknown = [s for s in symbols if s not in self.index]
        if unknown:
            raise TokenizeError(f"{smiles!r} holds {len(unknown)} symbol(s) the model's vocabulary lacks: "
                                f"{', '.join(sorted(set(unknown))[:10])}")
        return [self.index[s] for s in symbols]

    def decode_text(self, ids: Iterable[int]) -> str:
        """The symbol string of ``ids`` up to the first ``<eos>`` (``<pad>`` ends it too)."""
        out = []
        for i in ids:
            i = int(i)
            if i in (self.eos_id, self.pad_id):
                break
            if 0 <= i < len(self.tokens):
                out.append(self.tokens[i])
        return "".join(out)

    def decode(self, ids: Iterable[int]) -> str:
        """``ids`` as SMILES (not canonicalised, not checked)."""
        return self.to_smiles(self.decode_text(ids))

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "representation": self.representation, "tokens": self.tokens,
                "specials": [PAD, EOS]}

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / TOKENIZER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, (json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
        return path


class SmilesTokenizer(MoleculeTokenizer):
    representation = "smiles"

    def symbols(self, smiles: str) -> list[str]:
        return split_smiles(smiles)

    def to_smiles(self, text: str) -> str:
        return text


class SelfiesTokenizer(MoleculeTokenizer):
    representation = "selfies"

    def symbols(self, smiles: str) -> list[str]:
        return split_selfies(smiles_to_selfies(smiles))

    def to_smiles(self, text: str) -> str:
        import selfies

        try:
            return selfies.decoder(text) if text else ""
        except selfies.DecoderError:
            return ""


TOKENIZERS = {"smiles": SmilesTokenizer, "selfies": SelfiesTokenizer}


def make_tokenizer(representation: str, smiles: Iterable[str]) -> MoleculeTokenizer:
    if representation not in TOKENIZERS:
        raise ValueError(f"unknown representation {representation!r}; choose one of {', '.join(REPRESENTATIONS)}")
    return TOKENIZERS[representation].fit(smiles)


def load_tokenizer(path: str | Path) -> MoleculeTokenizer:
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT or data.get("representation") not in TOKENIZERS:
        raise ValueError(f"{path} is not a noisecraft molecule tokenizer (format {data.get('format')!r})")
    return TOKENIZERS[data["representation"]](data["tokens"])
