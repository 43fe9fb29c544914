"""Parameter and FLOP counts (models/arithmetic.py): the formulas the help table and the benches print."""
import numpy as np
import pytest

from glassformer.errors import UserError
from glassformer.models import build_model, lm_config
from glassformer.models.arithmetic import flops_per_token, lm_parameters


@pytest.mark.parametrize("bias", [True, False])
def test_lm_parameters_counts_the_model_with_and_without_biases(bias):
    """lm_parameters (the benches' FLOP count) is the built model's count, nanoGPT's bias=False too."""
    c = lm_config("tiny", 65, max_len=64, bias=bias)
    model = build_model(c, np.random.default_rng(0))
    assert lm_parameters(c) == model.n_parameters()
    assert (lm_parameters(c) < lm_parameters(lm_config("tiny", 65, max_len=64))) == (not bias)
    with pytest.raises(UserError, match="bias='no' must be true or false"):
        lm_config("tiny", 65, bias="no")


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_preset_parameter_formula_matches_the_model(preset):
    config = lm_config(preset, 65)
    assert lm_parameters(config) == build_model(config, np.random.default_rng(0)).n_parameters()
    assert flops_per_token(1000, 2, 16, 8) == 6 * 1000 + 12 * 2 * 16 * 8
