"""Our byte-level BPE (tokenizers/bpe.py): trained, round trips, specials, encoding as the merge-by-rank loop,
save and load, and GPT-2's own files giving GPT-2's ids."""
import functools
import json
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from glassformer.errors import UserError
from glassformer.tokenizers import (ByteLevelBPE, CharTokenizer, Tokenizer, WordTokenizer,
                                    load_tokenizer, tokenizer_from_dict)
from glassformer.tokenizers.bpe import count_pretokens, gpt2_pattern, safe_text
from datapaths import DATA

GPT2 = DATA / "gpt2-tokenizer"
TRICKY = ["", " ", "\n", "\t\t x  \n\n  y \r\n", "Hello, world!", "I'm sure you don't, they'll've",
          "héllo wörld", "漢字とカタカナ", "emoji 😀🎉👍🏽 flags 🇫🇷",
          "numbers 12345 3.14 1,000 ½ ²",
          "mixed\u00a0nbsp\u3000ideographic space", "a\x1cb\x00c\x7f", "<|endoftext|> in text"]


def json_trip(tok):
    """to_dict -> JSON text -> from_dict, as inside a checkpoint header."""
    return tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))


# ---- ByteLevelBPE: trained (the algorithm: test_bpe_train.py) ---------------------------------------

def small_corpus(n_words=3000, seed=0):
    rng = np.random.default_rng(seed)
    vocab = ["the", "cat", "sat", "on", "mat", "zebra", "naïve", "café", "東京", "🙂", "don't", "42",
             "3.14", "lower", "newest", "widest", "<|endoftext|>"]
    p = np.linspace(2, 1, len(vocab))
    words = rng.choice(vocab, size=n_words, p=p / p.sum())
    words = [w if rng.random() < 0.7 else "".join(rng.choice(list("abcdeéx"), size=rng.integers(2, 8)))
             for w in words]                                          # rare random words: many ties
    seps = rng.choice([" ", " ", " ", "  ", "\n", " \n", "\n\n", ", ", ". "], size=n_words)
    return "".join(w + s for w, s in zip(words, seps))


@pytest.fixture(scope="module")
def small_bpe():
    return ByteLevelBPE.train(small_corpus(), 256 + 80 + 1, progress=False)


def test_train_vocab_size_and_round_trips(small_bpe):
    assert small_bpe.vocab_size == 256 + 80 + 1
    assert len(small_bpe.encode(" the cat sat")) < len(" the cat sat".encode())   # merges were learned
    for text in TRICKY + [small_corpus(200, seed=1)]:
        assert small_bpe.decode(small_bpe.encode(text)) == text


def test_specials_one_id_only_when_allowed(small_bpe):
    eot = small_bpe.token_id("<|endoftext|>")
    assert eot == small_bpe.vocab_size - 1
    assert small_bpe.encode("a<|endoftext|>b", allowed_special="all").count(eot) == 1
    assert eot not in small_bpe.encode("a<|endoftext|>b")               # default: plain text
    assert small_bpe.encode("<|endoftext|>", allowed_special="<|endoftext|>") == [eot]
    ids = small_bpe.encode("x<|endoftext|>", allowed_special={"<|endoftext|>"})
    assert ids[-1] == eot and small_bpe.decode(ids) == "x<|endoftext|>"
    with pytest.raises(UserError, match="not special"):
        small_bpe.encode("x", allowed_special={"<|nope|>"})
    assert not any("endoftext" in w for w in count_pretokens(small_corpus(), ["<|endoftext|>"]))


def test_surrogates_and_invalid_bytes_become_visible_replacement(small_bpe):
    assert small_bpe.decode(small_bpe.encode("a\ud800b")) == "a\ufffdb"     # lone surrogate: U+FFFD
    assert small_bpe.decode(small_bpe.encode("\ud83d\ude00")) == "😀"        # a valid pair is joined
    assert small_bpe.decode([0xF0, 0x9F]) == "\ufffd"                         # cut multi-byte char
    with pytest.raises(UserError, match="outside"):
        small_bpe.decode([small_bpe.vocab_size])


# ---- ByteLevelBPE: encoding is the merge-by-rank loop, in O(n log n) ------------------------------------

@functools.lru_cache(maxsize=None)
def ranks_and_bytes(tok):
    """(pair -> rank, byte -> id) of a tokenizer, from its public merges and token bytes."""
    ranks = {(a, b): r for r, (a, b, _) in enumerate(tok.merges)}
    specials, byte_ids = set(tok.specials.values()), {}
    for i in range(tok.vocab_size):
        if len(tok.token_bytes(i)) == 1 and i not in specials:
            byte_ids.setdefault(tok.token_bytes(i)[0], i)
    return ranks, byte_ids


def reference_encode(tok, text):
    """The textbook encoder: rescan a pre-token for its lowest-rank pair after every merge (quadratic),
    on the text encode() defines (lone surrogates, which UTF-8 cannot hold, as U+FFFD)."""
    ranks, byte_ids = ranks_and_bytes(tok)
    ids = []
    for piece in gpt2_pattern().findall(safe_text(text)):
        word = [byte_ids[b] for b in piece.encode("utf-8")]
        while len(word) > 1:
            rank = min(ranks.get(pair, float("inf")) for pair in zip(word, word[1:]))
            if rank == float("inf"):
                break
            a, b, new = tok.merges[rank]
            out, i = [], 0
            while i < len(word):                               # every non-overlapping (a, b), left to right
                if i + 1 < len(word) and (word[i], word[i + 1]) == (a, b):
                    out.append(new)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        ids.extend(word)
    return ids


@pytest.fixture(scope="module")
def shuffled_bpe(small_bpe):
    """small_bpe with its merges in a random rank order: merges may then use tokens made by later ones."""
    order = np.random.default_rng(0).permutation(len(small_bpe.merges))
    tokens = [small_bpe.token_bytes(i) for i in range(small_bpe.vocab_size)]
    return ByteLevelBPE(tokens, [small_bpe.merges[k] for k in order], small_bpe.specials)


@pytest.fixture(scope="module")
def tangled_bpe():
    """A hand-made table whose first merges use tokens that later merges make (rank order inverted)."""
    a, b = ord("a"), ord("b")
    tokens = [bytes([i]) for i in range(256)] + [b"ab", b"aba", b"bab", b"ba", b"abab"]
    merges = [(256, a, 257), (b, 256, 258), (a, b, 256), (b, a, 259), (256, 256, 260)]
    return ByteLevelBPE(tokens, merges)


def test_merges_made_in_a_pass_wait_for_the_next_rank(tangled_bpe):
    # (a, b) merges at both places first; only then is (ab, a) looked for, and it is gone: [ab, ab] -> abab
    assert tangled_bpe.encode("abab") == reference_encode(tangled_bpe, "abab") == [260]
    assert tangled_bpe.encode("ababa") == reference_encode(tangled_bpe, "ababa")


def gpt2_or_none():
    if (GPT2 / "encoder.json").exists() and (GPT2 / "vocab.bpe").exists():
        return ByteLevelBPE.from_gpt2(GPT2 / "encoder.json", GPT2 / "vocab.bpe")
    return None


TEXTS = st.text(st.sampled_from("aabbcdeéxt 東京'\n") | st.characters(), max_size=200) | \
    st.lists(st.sampled_from(["the", " cat", "a", "aa", "ab", "é", "🙂", "42", " ", "st"]), max_size=60).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS | st.text("ab ", max_size=40))
def test_encode_equals_the_reference_loop(small_bpe, shuffled_bpe, tangled_bpe, text):
    for tok in (small_bpe, shuffled_bpe, tangled_bpe):
        tok._cache.clear()                                     # the merge loop itself, not a cached word
        assert tok.encode(text) == reference_encode(tok, text)


@pytest.fixture(scope="module")
def gpt2_maybe():
    return gpt2_or_none()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
def test_encode_equals_the_reference_loop_on_gpt2(gpt2_maybe, text):
    if gpt2_maybe is None:
        pytest.skip(f"GPT-2 tokenizer files not found under {GPT2}")
    gpt2_maybe._cache.clear()
    assert gpt2_maybe.encode(text) == reference_encode(gpt2_maybe, text)


def paired_bpe(text, levels=2):
    """A tokenizer whose merges pair up text's bytes, then those pairs, level by level: ~n/4 distinct merges."""
    tokens, merges, made = [bytes([i]) for i in range(256)], [], {}
    level = list(text.encode("utf-8"))
    for _ in range(levels):
        up = []
        for a, b in zip(level[::2], level[1::2]):
            if (a, b) not in made:
                made[a, b] = len(tokens)
                tokens.append(tokens[a] + tokens[b])
                merges.append((a, b, made[a, b]))
            up.append(made[a, b])
        level = up
    return ByteLevelBPE(tokens, merges)


def test_one_long_pretoken_encodes_fast_and_round_trips(gpt2_maybe):
    letters = "".join(np.random.default_rng(0).choice(list("abcdefghijklmnopqrstuvwxyz"), size=80_000))
    for tok in filter(None, (paired_bpe(letters), gpt2_maybe)):    # thousands of merges apply in one piece
        start = time.perf_counter()
        ids = tok.encode(letters)                              # the old rescanning loop: minutes
        assert time.perf_counter() - start < 5.0
        assert tok.decode(ids) == letters
        assert tok.encode(letters[:1500]) == reference_encode(tok, letters[:1500])
        assert letters not in tok._cache                       # long pieces are not kept in the word cache


# ---- save / load -------------------------------------------------------------------------------------

def test_save_load_round_trip(tmp_path, small_bpe):
    for tok in (small_bpe, CharTokenizer.from_text("abc", specials=["<PAD>"]), WordTokenizer(["x", "y"])):
        path = tmp_path / f"{tok.type}.json"
        tok.save(path)
        back = load_tokenizer(path)
        assert type(back) is type(tok) and back.to_dict() == tok.to_dict()
    back = ByteLevelBPE.load(tmp_path / "bpe.json")
    assert back.encode(TRICKY[8]) == small_bpe.encode(TRICKY[8])
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(UserError, match="not a 'bpe'"):
        ByteLevelBPE.load(tmp_path / "char.json")
    with pytest.raises(TypeError, match="load_tokenizer"):     # the base class cannot know every kind
        Tokenizer.load(tmp_path / "char.json")


def test_bad_files_are_user_errors(tmp_path, small_bpe):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_tokenizer(bad)
    with pytest.raises(UserError, match="cannot read"):
        load_tokenizer(tmp_path / "missing.json")
    bad.write_text(json.dumps({"type": "sentencepiece"}))
    with pytest.raises(UserError, match="not a glassformer tokenizer"):
        load_tokenizer(bad)
    d = small_bpe.to_dict()
    d["merges"][0] = [d["merges"][0][1], d["merges"][0][0], d["merges"][0][2]]
    with pytest.raises(UserError, match="inconsistent"):
        tokenizer_from_dict(d)
    d = small_bpe.to_dict()
    del d["vocab"]
    with pytest.raises(UserError, match="malformed"):
        tokenizer_from_dict(d)
    assert issubclass(ByteLevelBPE, Tokenizer)


# ---- GPT-2's own files ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gpt2():
    if not (GPT2 / "encoder.json").exists() or not (GPT2 / "vocab.bpe").exists():
        pytest.skip(f"GPT-2 tokenizer files not found under {GPT2}")
    return ByteLevelBPE.from_gpt2(GPT2 / "encoder.json", GPT2 / "vocab.bpe")


def test_gpt2_known_ids(gpt2):
    assert gpt2.vocab_size == 50257
    assert gpt2.encode("Hello world") == [15496, 995]
    assert gpt2.encode(" Hello") == [18435]
    assert gpt2.encode("<|endoftext|>", allowed_special="all") == [50256]
    # ids below were cross-checked against an independent string-level GPT-2 encoder
    assert gpt2.encode("I'm") == [40, 1101]
    assert gpt2.encode("don't") == [9099, 470]
    assert gpt2.encode("12345 3.14159 1,000,000") == [10163, 2231, 513, 13, 1415, 19707, 352, 11, 830,
                                                       11, 830]
    assert gpt2.encode("  multiple   spaces\n\n\nnewlines\t") == [220, 3294, 220, 220, 9029, 628, 198, 3605,
                                                                   6615, 197]
    assert gpt2.encode("héllo wörld 漢字 😀🎉") == [71, 2634, 18798, 266, 30570, 335, 10545, 120, 95,
                                                 27764, 245, 30325, 222, 8582, 236, 231]


def test_gpt2_round_trips_on_real_text(gpt2):
    texts = list(TRICKY)
    for rel in ("wikitext-2/valid.txt", "tinyshakespeare/input.txt"):
        if (DATA / rel).exists():
            texts.append((DATA / rel).read_text(encoding="utf-8")[:30000])
    for text in texts:
        assert gpt2.decode(gpt2.encode(text)) == text


def test_gpt2_json_and_hf_format_give_same_ids(gpt2, tmp_path):
    text = "The quick brown fox, 1984 — naïve café 東京 🙂\n\n  indented"
    assert json_trip(gpt2).encode(text) == gpt2.encode(text)
    encoder = json.loads((GPT2 / "encoder.json").read_text(encoding="utf-8"))
    (tmp_path / "vocab.json").write_text(json.dumps(encoder, indent=1, ensure_ascii=False), encoding="utf-8")
    merges = (GPT2 / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:]
    (tmp_path / "merges.txt").write_text("\n".join(["#version: 0.2 - hf"] + merges), encoding="utf-8")
    hf = ByteLevelBPE.from_hf(tmp_path / "vocab.json", tmp_path / "merges.txt")
    assert hf.encode(text) == gpt2.encode(text)
    (tmp_path / "merges.txt").write_text("#version: 0.2\nĠ t\nnot-a-pair\n", encoding="utf-8")
    with pytest.raises(UserError, match="merges.txt:3"):
        ByteLevelBPE.from_hf(tmp_path / "vocab.json", tmp_path / "merges.txt")


