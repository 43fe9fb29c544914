"""Reading in blocks (data/io.py): a character cut by the block size is rejoined."""
from glassformer.data import read_blocks
from unit.data.test_sources import write


def test_blocks_rejoin_multibyte_characters_cut_by_the_block_size(tmp_path):
    text = "héllo wörld ✓ 𝄞 end\n" * 3
    path = write(tmp_path / "u.txt", text)
    assert "".join(read_blocks(path, block=3)) == text
