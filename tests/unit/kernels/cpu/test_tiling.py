"""The CPU overlay's tiles (kernels/cpu/tiling.py): flat slices that cover an array in order."""
import numpy as np


def test_flat_tiles_cover_the_array_in_order(monkeypatch):
    from glassformer.kernels.cpu import tiling
    monkeypatch.setattr(tiling, "TILE", 4)
    tiles = tiling.flat_tiles(np.zeros((3, 5)))
    assert [(t.start, t.stop) for t in tiles] == [(0, 4), (4, 8), (8, 12), (12, 15)]
    assert [(t.start, t.stop) for t in tiling.flat_tiles(np.zeros(4))] == [(0, 4)]
    assert [(t.start, t.stop) for t in tiling.flat_tiles(np.zeros((0, 3)))] == [(0, 0)]
