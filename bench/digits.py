"""Benchmark: train the seed's medium digit-operations encoder and print one JSON line.

10K examples (3 arguments, digits 0-9), encoder 2 blocks, 4 heads, d_model 64, FFN 256, post-LN,
sinusoidal positions, first-token pooling, Adam 1e-3, batch 32, 20 epochs.
  python bench/digits.py [--threads N] [--epochs 20]
"""
import argparse
import json
import os
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads (default 1: these matrices are small, and spare threads "
                             "spin when the cores are busy)")
    args = parser.parse_args()
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # before NumPy loads its BLAS
    import numpy as np
    from glassformer import Adam, CrossEntropyLoss, ModelConfig, build_model
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
    start = time.perf_counter()
    for _ in range(args.epochs):
        train_epoch(model, loss_fn, optimizer, train_ids, train_y, 32, rng)
    seconds = time.perf_counter() - start
    test_ids, test_y, test_ops = data["test"]
    _, acc, preds = evaluate(model, loss_fn, test_ids, test_y)
    print(json.dumps({"train_seconds": round(seconds, 2), "test_accuracy": round(acc, 4),
                      "per_operation_accuracy": accuracy_by_group(preds, test_y, test_ops,
                                                                  digits.OPERATIONS),
                      "epochs": args.epochs, "n_train": len(train_ids), "blas_threads": args.threads,
                      "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "auto")}))


if __name__ == "__main__":
    main()
