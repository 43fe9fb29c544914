"""Benchmark: GPT-2 124M (random weights) through a Hugging Face folder, on the
CPU; one JSON line.

Writes GPT-2 small's shapes (vocab 50257, 12 layers x 768, 1024 positions,
tied head) as an HF folder (config.json + model.safetensors) to a temp dir,
then measures: load_checkpoint(folder), cached greedy generation (32 new
tokens after a 16-token prompt), one AdamW fine-tuning step (batch 1, context
256) and the process's peak resident memory.
  python bench/gpt2.py [--threads 1] [--new-tokens 32] [--batch 1] \\
      [--context 256]
"""
import argparse
import json
import os
import resource
import tempfile
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--batch", type=int, default=1, help="fine-tuning batch (windows)")
    p.add_argument("--context", type=int, default=256, help="fine-tuning window length")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads (sets OPENBLAS_NUM_THREADS before NumPy loads; default 1)")
    return p.parse_args(argv)


def peak_rss_mib():
    """The process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv=None):
    args = parse_args(argv)
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import numpy as np
    from glassformer.checkpoint import load_checkpoint
    from glassformer.checkpoint.hf_gpt2 import save_hf_gpt2
    from glassformer.generate import generate_tokens
    from glassformer.layers.loss import CrossEntropyLoss
    from glassformer.models import build_model, lm_config
    from glassformer.optim.optimizers import AdamW
    from glassformer.train.step import train_step

    config = lm_config("large", 50257)                      # GPT-2 small: 12 x 768, 1024 positions
    result = {"benchmark": "gpt2", "params": None, "blas_threads": args.threads}
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        save_hf_gpt2(folder, build_model(config, np.random.default_rng(0)))
        result["write_s"] = round(time.perf_counter() - t0, 2)
        result["file_mib"] = round(os.path.getsize(os.path.join(folder, "model.safetensors")) / 2 ** 20, 1)
        result["rss_after_write_mib"] = peak_rss_mib()
        t0, c0 = time.perf_counter(), time.process_time()
        model = load_checkpoint(folder).model
        result["load_s"] = round(time.perf_counter() - t0, 2)
        result["load_cpu_s"] = round(time.process_time() - c0, 2)   # on a busy machine: the fair figure
    result["params"] = model.n_parameters()
    rng = np.random.default_rng(1)
    prompt = rng.integers(0, config.vocab_size, args.prompt_len).tolist()
    model.eval()
    generate_tokens(model, prompt, 2, temperature=0)        # warm-up: first-call allocations
    t0, c0 = time.perf_counter(), time.process_time()
    new = generate_tokens(model, prompt, args.new_tokens, temperature=0)
    gen_s, gen_cpu = time.perf_counter() - t0, time.process_time() - c0
    result["generate"] = {"prompt": args.prompt_len, "new_tokens": len(new), "seconds": round(gen_s, 2),
                          "cpu_s": round(gen_cpu, 2), "tokens_per_s": round(len(new) / gen_s, 2)}
    model.train()
    optimizer = AdamW(model.get_parameters(), lr=1e-4, weight_decay=0.1)
    x = rng.integers(0, config.vocab_size, (args.batch, args.context + 1))
    batch = [((x[:, :-1],), x[:, 1:])]
    steps, cpu = [], []
    for _ in range(2):                                      # the first also allocates Adam's m and v
        t0, c0 = time.perf_counter(), time.process_time()
        loss, _, _ = train_step(model, CrossEntropyLoss(), optimizer, iter(batch), grad_clip=1.0)
        steps.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    result["finetune_step"] = {"batch": args.batch, "context": args.context, "first_s": round(steps[0], 2),
                               "second_s": round(steps[1], 2), "second_cpu_s": round(cpu[1], 2),
                               "loss": round(float(loss), 3),
                               "tokens_per_s": round(args.batch * args.context / steps[1], 1)}
    result["peak_rss_mib"] = peak_rss_mib()
    result["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
