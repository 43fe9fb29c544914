"""What the CUDA kernels share (kernels/common.py): the row kernels' sources and block sizes."""
from glassformer.kernels import common


def test_row_kernel_sources_and_block_sizes():
    assert set(common.ROW_KERNELS) == {"softmax_forward", "softmax_backward", "layer_norm_forward",
                                       "layer_norm_backward", "cross_entropy_forward"}
    for name in common.ROW_KERNELS:
        for char, storage in [("e", "unsigned short"), ("f", "float"), ("d", "double")]:
            src = common.row_source(name, char)
            assert f"typedef {storage} S_t;" in src and f'extern "C" __global__ void {name}(' in src
    assert [common.row_threads(n) for n in (1, 128, 256, 1024, 50257)] == [32, 32, 64, 256, 1024]
