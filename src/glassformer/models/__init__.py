"""Models built from a ModelConfig."""
from .config import ModelConfig, lm_config
from .encoder import EncoderClassifier
from .decoder import DecoderLM


def build_model(config, rng):
    """The model a config describes, with parameters drawn from rng, laid flat (Layer.flatten)."""
    model = DecoderLM(config, rng) if config.kind == "decoder_lm" else EncoderClassifier(config, rng)
    return model.flatten()


__all__ = ["ModelConfig", "lm_config", "EncoderClassifier", "DecoderLM", "build_model"]
