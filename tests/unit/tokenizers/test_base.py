"""What every tokenizer shares (tokenizers/base.py): JSON read with bounds."""
import pytest

from glassformer.errors import UserError


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"a": ' + "9" * 5000 + "}"])
def test_read_json_refuses_deep_nesting_and_huge_numbers_as_one_error(tmp_path, text):
    from glassformer.tokenizers.base import read_json
    path = tmp_path / "tok.json"
    path.write_text(text)
    with pytest.raises(UserError, match=r"tok.json: not valid JSON \((nested too deeply|a number too long)"):
        read_json(path)
