"""Text generation: tokenizers (char, byte-level BPE), corpora (UTF-8 checks, Gutenberg stripping, the default
Shakespeare corpus) and token windows."""

from __future__ import annotations

import pytest
import torch

from noisecraft.textgen.data import (HELD_OUT_PLAYS, PLAYS, TokenWindows, load_corpus, read_corpus,
                                     shakespeare_corpus, strip_gutenberg)
from noisecraft.textgen.tokenizers import (BPETokenizer, CharTokenizer, UnknownCharacters, load_tokenizer,
                                           train_tokenizer)

TEXTS = ["To be, or not to be: that is the question.\n", "Grüße aus Köln — naïve café, 日本語, emoji 🎉.\n",
         "Tabs\tand\r\nwindows line ends, and the literal <eos> and <pad> strings.\n"]


def test_char_tokenizer_round_trip_specials_and_save(tmp_path):
    tokenizer = CharTokenizer.train(TEXTS)
    for text in TEXTS + ["", "<eos>"]:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert len(tokenizer.encode("🎉")) == 1  # one token per character, not per byte
    assert {tokenizer.pad_id, tokenizer.eos_id, tokenizer.unk_id} == set(range(tokenizer.vocab_size - 3,
                                                                                tokenizer.vocab_size))
    stream = tokenizer.encode_documents(["ab", "c"])
    assert stream == tokenizer.encode("ab") + [tokenizer.eos_id] + tokenizer.encode("c") + [tokenizer.eos_id]
    assert tokenizer.decode(stream, skip_special=False) == "ab<eos>c<eos>"
    loaded = load_tokenizer(tokenizer.save(tmp_path))
    assert loaded.chars == tokenizer.chars and loaded.encode(TEXTS[1]) == tokenizer.encode(TEXTS[1])


def test_char_tokenizer_names_unknown_characters():
    tokenizer = CharTokenizer.train(["abc "])
    with pytest.raises(UnknownCharacters, match=r"2 character\(s\).*'x', 'é'"):
        tokenizer.encode("ab xé x")
    assert tokenizer.encode("az", strict=False) == [tokenizer.encode("a")[0], tokenizer.unk_id]


def test_bpe_round_trip_on_any_utf8_and_save(tmp_path):
    tokenizer = BPETokenizer.train(TEXTS * 10, vocab_size=300)
    unseen = ["Ωμέγα ∀x∈ℝ 🙂 \x00 \u200b  leading and trailing spaces  ", " ", "\n\n", "<eos><pad>"]
    for text in TEXTS + unseen:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.eos_id not in tokenizer.encode("<eos>")  # a special token is never matched in text
    assert tokenizer.vocab_size == tokenizer.base_size + 2 and tokenizer.base_size <= 300
    loaded = load_tokenizer(tokenizer.save(tmp_path))
    assert loaded.encode(TEXTS[1]) == tokenizer.encode(TEXTS[1])
    again = train_tokenizer("bpe", TEXTS * 10, bpe_vocab_size=300)  # training is deterministic
    assert again.to_dict() == tokenizer.to_dict()
    with pytest.raises(ValueError, match="bpe_vocab_size"):
        BPETokenizer.train(TEXTS, vocab_size=100)
    with pytest.raises(ValueError, match="unknown tokenizer 'words'"):
        train_tokenizer("words", TEXTS)


GUTENBERG = """The Project Gutenberg EBook of Something
Licence blah blah
*** START OF THIS PROJECT GUTENBERG EBOOK SOMETHING ***

ACT I. The play begins.
*** A line with stars inside the text ***
The end of the play.

*** END OF THIS PROJECT GUTENBERG EBOOK SOMETHING ***
More licence
"""

OLD_GUTENBERG = """Header of the old style
*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*
The body.
End of the Project Gutenberg Etext of Something
"""


def test_gutenberg_boilerplate_is_stripped_new_and_old_markers():
    body = strip_gutenberg(GUTENBERG)
    assert body.startswith("ACT I.") and "stars inside" in body and "licence" not in body.lower()
    assert body.rstrip().endswith("The end of the play.") and "START OF" not in body and "END OF" not in body
    assert strip_gutenberg(OLD_GUTENBERG) == "The body.\n"
    assert strip_gutenberg("plain text\n") == "plain text\n"


def test_read_corpus_files_folders_and_bad_input(tmp_path):
    folder = tmp_path / "books"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text(GUTENBERG, encoding="utf-8")
    (folder / "sub" / "a.txt").write_text("\ufeffsecond document\n", encoding="utf-8")
    (folder / "notes.md").write_text("not a corpus file", encoding="utf-8")
    corpus = read_corpus(folder)
    assert [d.name for d in corpus.documents] == ["b.txt", "sub/a.txt"]
    assert corpus.documents[0].text.startswith("ACT I.") and corpus.documents[1].text == "second document\n"
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf".encode() + "é is latin-1".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.txt is not UTF-8 text: byte offset 3 \(0xe9\)"):
        read_corpus(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blank.txt").write_text("  \n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="is empty"):
        read_corpus(empty)
    with pytest.raises(ValueError, match="holds no .txt files"):
        read_corpus(_empty_dir(tmp_path))
    with pytest.raises(FileNotFoundError, match="corpus not found"):
        read_corpus(tmp_path / "missing.txt")


def _empty_dir(tmp_path):
    folder = tmp_path / "nothing"
    folder.mkdir()
    return folder


def test_default_corpus_is_the_plays_with_two_held_out():
    corpus = load_corpus("shakespeare")
    assert len(PLAYS) == 37 and len(HELD_OUT_PLAYS) == 2 and set(HELD_OUT_PLAYS) <= set(PLAYS)
    assert [d.name for d in corpus.held_out] == list(HELD_OUT_PLAYS)
    assert [d.name for d in corpus.documents] == [p for p in PLAYS if p not in HELD_OUT_PLAYS]
    assert "sonnets" not in {d.name for d in corpus.documents}
    hamlet = next(d for d in corpus.documents if d.name == "hamlet")
    assert hamlet.text.startswith("HAMLET, PRINCE OF DENMARK") and "To be, or not to be" in hamlet.text
    assert all("gutenberg" not in d.text.lower() for d in corpus.documents + corpus.held_out)
    assert corpus.provenance["held_out"] == list(HELD_OUT_PLAYS)
    assert [d.text for d in shakespeare_corpus().held_out] == [d.text for d in corpus.held_out]  # deterministic


def test_windows_keep_document_boundaries():
    tokenizer = CharTokenizer.train(["abcdef"])
    stream = tokenizer.encode_documents(["abc", "de", "f"])  # a b c <eos> d e <eos> f <eos>: 9 tokens
    windows = TokenWindows(stream, 4, stride=2)
    assert len(windows) == 3  # starts 0, 2, 4
    batch = windows.collate([0, 1, 2])["tokens"]
    assert batch.dtype == torch.long and batch.shape == (3, 4)
    assert [tokenizer.decode(row, skip_special=False) for row in batch] == \
        ["abc<eos>", "c<eos>de", "de<eos>f"]
    assert len(TokenWindows(stream, 8)) == 1 + (9 - 8) // 2  # default stride: length // 4
    with pytest.raises(ValueError, match="9 tokens long, shorter than one window of 10 tokens"):
        TokenWindows(stream, 10)
