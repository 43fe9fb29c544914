"""ModelConfig and the presets (models/config.py): validation, the dict round trip, and the language-model
presets' sizes, parameter counts and overrides."""
import numpy as np
import pytest

from glassformer.errors import UserError
from glassformer.models import ModelConfig, build_model, lm_config
from unit.models.test_builders import config


def lm_params(V, C, T, L):
    """Parameters of a tied, pre-LN, learned-position LM with d_ff = 4C (the presets' shape)."""
    block = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    return V * C + T * C + L * block + 2 * C


@pytest.mark.parametrize("preset,C,H,L,T", [("tiny", 128, 4, 4, 128), ("small", 256, 8, 6, 256),
                                             ("medium", 512, 8, 8, 512), ("large", 768, 12, 12, 1024),
                                             ("qa", 512, 8, 10, 1024)])
def test_presets_have_their_sizes(preset, C, H, L, T):
    c = lm_config(preset, 1000)
    assert (c.d_model, c.n_heads, c.n_layers, c.max_len, c.d_ff) == (C, H, L, T, 4 * C)
    assert (c.kind, c.norm_first, c.activation, c.positional, c.tie_weights, c.init) == \
        ("decoder_lm", True, "gelu", "learned", True, "normal")


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_preset_models_have_the_expected_parameter_count(preset):
    c = lm_config(preset, 65)
    model = build_model(c, np.random.default_rng(0))
    assert model.n_parameters() == lm_params(65, c.d_model, c.max_len, c.n_layers)


def test_preset_overrides_and_bad_names():
    c = lm_config("tiny", 65, max_len=64, d_model=64, dropout=0.1)
    assert (c.max_len, c.d_model, c.d_ff, c.dropout) == (64, 64, 256, 0.1)
    with pytest.raises(UserError, match="unknown preset"):
        lm_config("huge", 65)
    with pytest.raises(UserError, match="unknown model setting"):
        lm_config("tiny", 65, n_layer=3)


# ---- ModelConfig ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad,match", [
    (dict(d_model=10, n_heads=3), "divisible"),
    (dict(activation="tanh"), "activation"),
    (dict(kind="seq2seq"), "kind"),
    (dict(n_layers=0), "n_layers"),
    (dict(dropout=1.0), "dropout"),
    (dict(pooling="max"), "pooling"),
])
def test_config_validation_raises_user_error(bad, match):
    with pytest.raises(UserError, match=match):
        config(**bad)


def test_config_dict_round_trip_and_unknown_keys():
    c = config(kind="decoder_lm", activation="gelu")
    assert ModelConfig.from_dict(c.to_dict()) == c
    assert c.d_head == 8
    with pytest.raises(UserError, match="n_experts"):
        ModelConfig.from_dict({**c.to_dict(), "n_experts": 4})


def test_scale_residual_init_needs_the_normal_init():
    with pytest.raises(UserError, match="init='normal'"):
        config(scale_residual_init=True)
    with pytest.raises(UserError, match="true or false"):
        config(init="normal", scale_residual_init="yes")
