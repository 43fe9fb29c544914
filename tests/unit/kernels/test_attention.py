"""The CUDA attention kernels' host-side logic (kernels/attention.py), on NumPy: the cuBLAS operand layouts
compute the right product, and the mask rows index the broadcast mask."""
import numpy as np

from glassformer.kernels import attention as attention_kernels


def emulate_strided_batched_gemm(transa, transb, m, n, k, A, lda, stride_a, B, ldb, stride_b, batch):
    """What cublasGemmStridedBatchedEx computes, read from memory the way cuBLAS reads it."""
    def matrices(X, op, rows, cols, ld, stride):           # op(X) is rows x cols, column-major
        shape = (rows, cols) if op == 0 else (cols, rows)
        it = X.itemsize
        stored = np.lib.stride_tricks.as_strided(X, (batch,) + shape, (stride * it, it, ld * it))
        return stored if op == 0 else stored.transpose(0, 2, 1)
    return matrices(A, transa, m, k, lda, stride_a) @ matrices(B, transb, k, n, ldb, stride_b)


def check_cublas_arguments(a, b):
    """blas_operand's (op, ld, stride) fed to the GEMM as cublas_bmm feeds them give a @ b."""
    *batch, M, K = a.shape
    P = b.shape[-1]
    A, op_a, ld_a, s_a = attention_kernels.blas_operand(np, a)
    B, op_b, ld_b, s_b = attention_kernels.blas_operand(np, b)
    n_batch = int(np.prod(batch))
    ct = emulate_strided_batched_gemm(op_b, op_a, P, M, K, B, ld_b, s_b, A, ld_a, s_a, n_batch)
    out = ct.transpose(0, 2, 1).reshape(*batch, M, P)      # C^T column-major = C row-major
    np.testing.assert_allclose(out, a @ b, rtol=1e-12)


def test_cublas_operand_layouts_compute_the_right_product(rng):
    B, H, T, D = 2, 3, 5, 4
    qkv = rng.standard_normal((B, T, 3, H, D)).transpose(2, 0, 3, 1, 4)   # fused projection views
    q, k, v = qkv[0], qkv[1], qkv[2]
    kc = np.ascontiguousarray(k)
    att = rng.standard_normal((B, H, T, T))
    check_cublas_arguments(q, k.swapaxes(-1, -2))           # strided views: copied
    check_cublas_arguments(np.ascontiguousarray(q), kc.swapaxes(-1, -2))   # k^T passed as op T
    check_cublas_arguments(att, v)
    check_cublas_arguments(att.swapaxes(-1, -2), np.ascontiguousarray(v))
    check_cublas_arguments(rng.standard_normal((1, 1, 1, 3)), rng.standard_normal((1, 1, 3, 1)))
    check_cublas_arguments(rng.standard_normal((4, 6, 2))[:, ::2], rng.standard_normal((4, 2, 7)))
    _, op, ld, stride = attention_kernels.blas_operand(np, kc.swapaxes(-1, -2))
    assert (op, ld, stride) == (1, D, T * D)                # no copy for a transposed contiguous array


def test_mask_rows_index_the_broadcast_mask(rng):
    shape = (2, 3, 4, 5)                                     # (B, H, T, S)
    for allowed in [rng.random((2, 1, 1, 5)) > 0.3, rng.random((1, 1, 4, 5)) > 0.3,
                    rng.random((4, 5)) > 0.5]:
        mask, rows, has = attention_kernels.mask_rows(np, allowed, shape)
        assert has == 1 and mask.flags.c_contiguous
        got = mask.reshape(-1, 5)[rows].reshape(shape)
        assert np.array_equal(got, np.broadcast_to(allowed, shape))
    assert attention_kernels.mask_rows(np, None, shape)[2] == 0
