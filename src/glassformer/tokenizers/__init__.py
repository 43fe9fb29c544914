"""Tokenizers: characters, words, and GPT-2-style byte-level BPE, all with one interface."""
from .base import Tokenizer, load_tokenizer, tokenizer_from_dict
from .char import CharTokenizer
from .word import WordTokenizer
from .bpe import ByteLevelBPE, GPT2_SPLIT

__all__ = ["Tokenizer", "CharTokenizer", "WordTokenizer", "ByteLevelBPE", "GPT2_SPLIT",
           "tokenizer_from_dict", "load_tokenizer"]
