"""Every tokenizer kind by its to_dict() "type": rebuild one from a dict or a saved file of any kind."""
from ..errors import UserError
from .base import read_json, rebuild
from .bpe import ByteLevelBPE
from .char import CharTokenizer
from .word import WordTokenizer

KINDS = {"char": CharTokenizer, "word": WordTokenizer, "bpe": ByteLevelBPE}


def tokenizer_from_dict(d, where="tokenizer dict"):
    """Rebuild a tokenizer from to_dict() output, dispatching on d["type"]."""
    if not isinstance(d, dict) or d.get("type") not in KINDS:
        got = d.get("type") if isinstance(d, dict) else type(d).__name__
        raise UserError(f"{where}: not a glassformer tokenizer (type {got!r}; "
                        f"expected one of {sorted(KINDS)})")
    return rebuild(KINDS[d["type"]], d, where)


def load_tokenizer(path):
    """Read any tokenizer saved with .save(path)."""
    return tokenizer_from_dict(read_json(path), where=str(path))
