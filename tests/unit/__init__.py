"""Unit tests, one folder per package of src/glassformer: packages, so that two test_attention.py can live apart."""
