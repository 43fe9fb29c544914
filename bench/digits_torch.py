"""The peer of bench/digits.py: the same encoder classifier, data, init and batch
order in PyTorch eager.

One JSON line like bench/digits.py's (train_seconds, test_accuracy, ...), for
bench/side_by_side.py. Runs in a side environment with torch (never a
glassformer dependency), glassformer on the path:
  PYTHONPATH=src /tmp/tv/bin/python bench/digits_torch.py [--threads 1] \\
      [--epochs 20] [--seed 0]

The same math and sizes as bench/digits.py: 10K digit-operation examples
(glassformer.tasks.digits, 3 arguments, so no padding and no attention mask),
2 post-LN blocks (torch.nn.TransformerEncoderLayer: x = LN(x + MHA(x)); x =
LN(x + W2 relu(W1 x))), 4 heads, d_model 64, FFN 256, LayerNorm eps 1e-5,
dropout 0, the fixed sinusoidal table added to the token embeddings,
first-token pooling, a linear head over 10 classes; mean cross-entropy, Adam
lr 1e-3 (betas 0.9/0.999, eps 1e-8, no decay), batch 32, 20 epochs; float32.
Initial weights: glassformer builds its model with the same seeded generator
as bench/digits.py and its weights are copied in (Xavier-uniform linears, zero
biases, N(0, 1/d) embeddings, LayerNorm 1/0); the same generator then draws
each epoch's permutation, so both see the same batches in the same order.
Timed, as in bench/digits.py: the 20 epochs of updates, plus the per-batch
loss and accuracy tallies train_epoch keeps (here as tensors, read once per
epoch).
Differences: PyTorch's kernels (its attention is scaled_dot_product_attention,
its Adam the single-tensor loop torch picks on CPU) sum in other orders, so
losses agree to float32 rounding only and drift apart over 5,000 updates; ours
also checks every loss for NaN/inf, which this does not.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

# bench/profile.py would shadow the standard library's profile module, which torch.optim imports
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    return parser.parse_args(argv)


def build_torch_model(config, ours, torch):
    """The torch twin of a glassformer EncoderClassifier `ours`, with ours' weights copied in."""
    nn = torch.nn
    C = config.d_model

    class TorchEncoderClassifier(nn.Module):
        """ids (B, T) -> logits (B, n_classes): embeddings + sinusoidal table, post-LN blocks, token 0."""

        def __init__(self):
            super().__init__()
            self.tok_emb = nn.Embedding(config.vocab_size, C)
            self.register_buffer("pe", torch.tensor(ours.pos.table, dtype=torch.float32))  # (max_len, C)
            self.blocks = nn.ModuleList(
                nn.TransformerEncoderLayer(C, config.n_heads, config.d_ff, dropout=0.0, activation="relu",
                                           layer_norm_eps=config.norm_eps, batch_first=True,
                                           norm_first=False)
                for _ in range(config.n_layers))
            self.head = nn.Linear(C, config.n_classes)

        def forward(self, ids):                             # ids: (B, T)
            x = self.tok_emb(ids) + self.pe[:ids.shape[1]]  # (B, T, C)
            for block in self.blocks:
                x = block(x)
            return self.head(x[:, 0])                       # (B, n_classes)

    model = TorchEncoderClassifier()
    copy_weights(ours, model, torch)
    return model


def copy_weights(ours, model, torch):
    """Ours (y = x W, W (in, out)) into torch (y = x W^T, weight (out, in)); q|k|v in the same order."""
    def put(dst, src, transpose=False):
        value = torch.tensor(src.T if transpose else src, dtype=torch.float32)
        assert dst.shape == value.shape, (dst.shape, value.shape)
        dst.data.copy_(value)

    put(model.tok_emb.weight, ours.tok_emb.W)
    for mine, theirs in zip(ours.blocks, model.blocks):
        put(theirs.self_attn.in_proj_weight, mine.attn.qkv.W, True)
        put(theirs.self_attn.in_proj_bias, mine.attn.qkv.b)
        put(theirs.self_attn.out_proj.weight, mine.attn.proj.W, True)
        put(theirs.self_attn.out_proj.bias, mine.attn.proj.b)
        put(theirs.linear1.weight, mine.ffn.fc1.W, True)
        put(theirs.linear1.bias, mine.ffn.fc1.b)
        put(theirs.linear2.weight, mine.ffn.fc2.W, True)
        put(theirs.linear2.bias, mine.ffn.fc2.b)
        for ln, tln in ((mine.ln1, theirs.norm1), (mine.ln2, theirs.norm2)):
            put(tln.weight, ln.gamma)
            put(tln.bias, ln.beta)
    put(model.head.weight, ours.head.W, True)
    put(model.head.bias, ours.head.b)


def train_epoch(model, optimizer, ids, targets, batch_size, rng, torch):
    """One pass over a permutation drawn from rng (as glassformer's train_epoch); (mean loss, accuracy)."""
    N = len(ids)
    order = torch.from_numpy(rng.permutation(N))
    total, correct = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.int64)
    model.train()
    for i in range(0, N, batch_size):
        idx = order[i:i + batch_size]
        x, y = ids[idx], targets[idx]
        optimizer.zero_grad()
        logits = model(x)                                   # (B, n_classes)
        loss = torch.nn.functional.cross_entropy(logits, y)
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(y)
        correct += (logits.detach().argmax(dim=-1) == y).sum()
    return float(total) / N, float(correct) / N


def main(argv=None):
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # before NumPy/torch load their BLAS
    try:
        import numpy as np
        import torch
        from glassformer import ModelConfig, build_model
        from glassformer.tasks import digits
    except ImportError as e:
        print(f"bench/digits_torch.py: {e}; run it with a Python that has torch and numpy, and "
              "glassformer on the path (PYTHONPATH=src)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    data = digits.split(digits.DigitsConfig(size="medium", n_args=3, seed=args.seed))
    config = ModelConfig(vocab_size=len(digits.VOCAB), kind="encoder_classifier", d_model=64,
                         n_heads=4, n_layers=2, d_ff=256, max_len=16, norm_first=False,
                         positional="sinusoidal", pooling="first", n_classes=10)
    rng = np.random.default_rng(args.seed)                  # as bench/digits.py: init, then batch order
    model = build_torch_model(config, build_model(config, rng), torch)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_ids, train_y = (torch.from_numpy(a) for a in data["train"][:2])
    start, train_loss = time.perf_counter(), float("nan")
    for _ in range(args.epochs):
        train_loss, _ = train_epoch(model, optimizer, train_ids, train_y, 32, rng, torch)
    seconds = time.perf_counter() - start
    test_ids, test_y = (torch.from_numpy(a) for a in data["test"][:2])
    model.eval()
    with torch.no_grad():
        preds = torch.cat([model(test_ids[i:i + 512]).argmax(dim=-1) for i in range(0, len(test_ids), 512)])
    acc = float((preds == test_y).double().mean())
    print(json.dumps({"train_seconds": round(seconds, 2), "test_accuracy": round(acc, 4),
                      "train_loss_last": float(f"{train_loss:.4g}"), "epochs": args.epochs,
                      "n_train": len(train_ids), "torch_threads": torch.get_num_threads(),
                      "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
