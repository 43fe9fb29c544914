"""Text data: streaming loaders (txt, WikiText, Wikipedia XML, JSONL, TinyStories), token caches, batches."""
from .io import read_blocks, read_lines
from .sources import Continuation, count_words, read_jsonl, read_stories, read_txt, read_wikitext
from .wikipedia import clean_wikitext, read_wikipedia
from .kinds import KINDS, Source, detect_kind, open_source, split_files
from .corpus import (VAL_FRACTION, Corpus, build_tokens, load_corpus, random_windows, sequential_windows,
                     split_tokens, token_dtype, tokenizer_hash, lm_batches)
from .minimum import MIN_SCORED_TOKENS, require_known, require_tokens, require_visible, window_minimum
