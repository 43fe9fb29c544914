"""The LM run builder (runner/lm.py): the tokenizer it builds."""
import io

import pytest

from glassformer.generate import eos_id
from datapaths import DATA


def test_gpt2_tokenizer_is_found(monkeypatch):
    """--tokenizer gpt2 reads GPT-2's files from the data cache ($GLASSFORMER_DATA; shared/data here)."""
    from glassformer.runner.lm import GPT2_FILES, build_tokenizer, gpt2_dirs
    if DATA.is_dir():
        monkeypatch.setenv("GLASSFORMER_DATA", str(DATA))
    if not any(all((d / f).exists() for f in GPT2_FILES) for d in gpt2_dirs()):
        pytest.skip("GPT-2's encoder.json / vocab.bpe are not in the data cache ($GLASSFORMER_DATA)")
    tok = build_tokenizer("gpt2", None, None, io.StringIO())
    assert tok.vocab_size == 50257 and eos_id(tok) == 50256
    assert tok.encode("Hello world") == [15496, 995]
