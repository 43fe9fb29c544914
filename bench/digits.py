"""Benchmark: train the seed's medium digit-operations encoder and print one JSON
line.

10K examples (3 arguments, digits 0-9), encoder 2 blocks, 4 heads, d_model 64,
FFN 256, post-LN, sinusoidal positions, first-token pooling, Adam 1e-3, batch
32, 20 epochs.
  python bench/digits.py [--threads N] [--epochs 20]
Model FLOPs count the matmuls alone, forward + backward (= 3x forward: each
weight matmul has a dx and a dW matmul, attention's two batched matmuls have
two each): per example and block T tokens x (2 (4 C^2 + 2 C F) + 4 T C), plus
the head's 2 C n_classes on the pooled token. The JSON reads them against an
sgemm on the same BLAS threads, timed in this process before training
(glassformer.cli.common.matmul_rate).
"""
import argparse
import json
import os
import time


def encoder_flops_per_example(config, T):
    """Matmul FLOPs of one example's forward + backward (3x forward) through the encoder classifier."""
    C, F, L = config.d_model, config.d_ff, config.n_layers
    per_token = 2 * (4 * C * C + 2 * C * F) + 4 * T * C     # qkv, proj, fc1, fc2; q k^T and att v
    return 3 * (L * T * per_token + 2 * C * config.n_classes)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads (default 1: these matrices are small, and spare threads "
                             "spin when the cores are busy)")
    args = parser.parse_args()
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # before NumPy loads its BLAS
    import numpy as np
    from glassformer import Adam, CrossEntropyLoss, ModelConfig, build_model, cores
    from glassformer.cli.common import matmul_rate
    from glassformer.tasks import digits
    from glassformer.train.epochs import accuracy_by_group, evaluate, train_epoch

    data = digits.split(digits.DigitsConfig(size="medium", n_args=3, seed=args.seed))
    config = ModelConfig(vocab_size=len(digits.VOCAB), kind="encoder_classifier", d_model=64,
                         n_heads=4, n_layers=2, d_ff=256, max_len=16, norm_first=False,
                         positional="sinusoidal", pooling="first", n_classes=10)
    rng = np.random.default_rng(args.seed)
    model = build_model(config, rng)
    loss_fn = CrossEntropyLoss()
    optimizer = Adam(model.get_parameters(), lr=1e-3)
    train_ids, train_y, _ = data["train"]
    sgemm = matmul_rate()                                   # FLOP/s, before training, same threads
    start, train_loss = time.perf_counter(), float("nan")
    for _ in range(args.epochs):
        train_loss, _ = train_epoch(model, loss_fn, optimizer, train_ids, train_y, 32, rng)
    seconds = time.perf_counter() - start
    flops = encoder_flops_per_example(config, train_ids.shape[1]) * len(train_ids) * args.epochs
    test_ids, test_y, test_ops = data["test"]
    _, acc, preds = evaluate(model, loss_fn, test_ids, test_y)
    print(json.dumps({"train_seconds": round(seconds, 2), "test_accuracy": round(acc, 4),
                      "per_operation_accuracy": accuracy_by_group(preds, test_y, test_ops,
                                                                  digits.OPERATIONS),
                      "epochs": args.epochs, "n_train": len(train_ids), "blas_threads": args.threads,
                      "train_loss_last": float(f"{train_loss:.4g}"),
                      "flops_per_iter": encoder_flops_per_example(config, train_ids.shape[1]) * 32,
                      "model_flops_per_s": round(flops / seconds), "sgemm_flops_per_s": round(sgemm),
                      "model_to_sgemm": round(flops / seconds / sgemm, 4),
                      "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "auto"),
                      "blas_kernel": cores.blas_kernel()}))


if __name__ == "__main__":
    main()
