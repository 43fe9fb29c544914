"""EncoderClassifier (models/encoder.py): shapes, padding ignored by mean pooling, a trivial task learned."""
import numpy as np

from glassformer.layers.loss import CrossEntropyLoss
from glassformer.models import EncoderClassifier
from glassformer.optim.optimizers import Adam
from unit.models.test_builders import V, config


def test_encoder_classifier_shape(rng):
    model = EncoderClassifier(config(), rng)
    assert model.forward(rng.integers(0, V, (4, 7))).shape == (4, 3)


def test_mean_pooling_ignores_padded_tokens(rng):
    model = EncoderClassifier(config(pooling="mean", dtype="float64"), rng)
    ids = rng.integers(0, V, (2, 6))
    mask = np.array([[True] * 4 + [False] * 2, [True] * 6])
    out = model.forward(ids, mask).copy()
    ids2 = ids.copy()
    ids2[0, 4:] = (ids2[0, 4:] + 3) % V                    # change the padded tokens only
    np.testing.assert_allclose(model.forward(ids2, mask), out, rtol=1e-12, atol=1e-12)
    short = model.forward(ids[:1, :4])                     # the same sequence without padding
    np.testing.assert_allclose(short[0], out[0], rtol=1e-10, atol=1e-12)
    assert not np.allclose(model.forward(ids2)[0], model.forward(ids)[0])   # unmasked: it matters


def test_encoder_learns_first_token_mod_3(rng):
    model = EncoderClassifier(config(n_layers=1, max_len=8), rng)
    ce, opt = CrossEntropyLoss(), Adam(model.get_parameters(), lr=3e-3)
    data = np.random.default_rng(1)
    for _ in range(150):
        ids = data.integers(0, V, (32, 6))
        opt.zero_grad()
        loss = ce.forward(model.forward(ids), ids[:, 0] % 3)
        model.backward(ce.backward())
        opt.step()
    ids = data.integers(0, V, (300, 6))                    # fresh sequences
    accuracy = (model.eval().forward(ids).argmax(axis=-1) == ids[:, 0] % 3).mean()
    assert accuracy > 0.9, f"accuracy {accuracy:.2f} after 150 steps (last loss {float(loss):.3f})"
