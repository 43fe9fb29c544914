"""Tokenizers: characters, words, and GPT-2-style byte-level BPE, all with one interface."""
from .base import Tokenizer
from .char import CharTokenizer
from .word import WordTokenizer
from .bpe import ByteLevelBPE
from .pretokenize import GPT2_SPLIT
from .registry import load_tokenizer, tokenizer_from_dict

__all__ = ["Tokenizer", "CharTokenizer", "WordTokenizer", "ByteLevelBPE", "GPT2_SPLIT",
           "tokenizer_from_dict", "load_tokenizer"]
