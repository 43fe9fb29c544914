"""The encoder-decoder (research/encoder_decoder.py): it learns to copy, ignores source padding, decodes
greedily, and checks its config."""
import numpy as np
import pytest

from glassformer.errors import UserError
from glassformer.layers.loss import CrossEntropyLoss
from glassformer.optim.optimizers import AdamW
from glassformer.research import EncoderDecoder, EncoderDecoderConfig
from unit.research.test_layers import _randomize

PAD, BOS, EOS = 0, 1, 2


def _copy_batch(rng, B, L=4, n_symbols=6):
    src = rng.integers(3, 3 + n_symbols, (B, L))
    tgt_in = np.concatenate([np.full((B, 1), BOS), src], axis=1)    # teacher forcing
    tgt_out = np.concatenate([src, np.full((B, 1), EOS)], axis=1)
    return src, tgt_in, tgt_out


def test_encoder_decoder_learns_to_copy(rng):
    config = EncoderDecoderConfig(vocab_size=9, d_model=32, n_heads=2, n_layers=1, d_ff=64,
                                  max_len=8, share_embeddings=True)
    model = EncoderDecoder(config, rng)
    opt = AdamW(model.get_parameters(), lr=3e-3, weight_decay=0.0)
    loss_fn = CrossEntropyLoss()
    for _ in range(150):
        src, tgt_in, tgt_out = _copy_batch(rng, 32)
        opt.zero_grad()
        loss = loss_fn.forward(model.forward(src, tgt_in), tgt_out)
        model.backward(loss_fn.backward())
        opt.step()
    assert float(loss) < 0.1
    src, _, _ = _copy_batch(rng, 64)
    out = model.greedy_decode(src, BOS, EOS, max_len=6)
    assert out.shape == (64, 5)                               # stopped after every row's EOS
    assert (out[:, :4] == src).all(axis=1).mean() >= 0.95
    assert (out[:, 4] == EOS).mean() >= 0.95


def test_encoder_decoder_source_padding_is_ignored(rng):
    config = EncoderDecoderConfig(vocab_size=9, d_model=8, n_heads=2, n_layers=2, d_ff=16,
                                  max_len=8, norm_first=True, dtype="float64")
    model = _randomize(EncoderDecoder(config, rng), rng)
    src = np.array([[3, 4, 5, PAD, PAD]])
    tgt = np.array([[BOS, 6, 7]])
    short = model.forward(src[:, :3], tgt)
    padded = model.forward(src, tgt, src_mask=src != PAD)
    np.testing.assert_allclose(padded, short, atol=1e-12)
    assert padded.shape == (1, 3, 9)


def test_greedy_decode_pads_finished_rows_with_eos(rng):
    config = EncoderDecoderConfig(vocab_size=5, d_model=8, n_heads=2, n_layers=1, d_ff=8,
                                  max_len=8)
    model = EncoderDecoder(config, rng)
    model.head.b[...] = -10.0
    model.head.b[EOS] = 10.0                                  # every row ends at once
    out = model.greedy_decode(np.array([[3, 4], [4, 3]]), BOS, EOS, max_len=5)
    assert out.tolist() == [[EOS], [EOS]]
    assert model.training                                     # mode restored
    with pytest.raises(ValueError, match="max_len"):
        model.greedy_decode(np.array([[3]]), BOS, EOS, max_len=8)


def test_encoder_decoder_config_validation():
    with pytest.raises(UserError, match="share_embeddings"):
        EncoderDecoderConfig(vocab_size=5, tgt_vocab_size=7, share_embeddings=True)
    with pytest.raises(UserError, match="positional"):
        EncoderDecoderConfig(vocab_size=5, positional="rope")
    config = EncoderDecoderConfig(vocab_size=5, tgt_vocab_size=7, n_layers=1, n_decoder_layers=3)
    model = EncoderDecoder(config, np.random.default_rng(0))
    assert len(model.encoder) == 1 and len(model.decoder) == 3
    assert model.forward(np.zeros((1, 4), int), np.zeros((1, 2), int)).shape == (1, 2, 7)
