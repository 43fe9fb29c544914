"""Tasks: data generators for the studies glassformer runs (digit operations, sentences, ...)."""
