"""Models built from a ModelConfig."""
from .config import ModelConfig, lm_config
from .encoder import EncoderClassifier
from .decoder import DecoderLM


def build_model(config, rng):
    """The model a config describes, with parameters drawn from rng."""
    if config.kind == "decoder_lm":
        return DecoderLM(config, rng)
    return EncoderClassifier(config, rng)


__all__ = ["ModelConfig", "lm_config", "EncoderClassifier", "DecoderLM", "build_model"]
