"""Benchmark: GPT-2 124M (random weights) through a Hugging Face folder, on the
CPU, beside transformers when torch and transformers import; one JSON line.

Writes GPT-2 small's shapes (vocab 50257, 12 layers x 768, 1024 positions,
tied head) as an HF folder (config.json + model.safetensors) to a temp dir,
then measures, ours and then transformers' on the same folder: the load,
cached greedy generation (32 new tokens after a 16-token prompt; the ids
compared), forward+backward of batch x context (median of 3 after a warm-up),
and ours: one AdamW fine-tuning step and the process's peak resident memory.
"ratios" are ours over theirs (times; tokens/s for decoding).
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
                   help="CPU threads, ours (backend.set_threads) and torch's (default 1)")
    return p.parse_args(argv)


def peak_rss_mib():
    """The process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def median_s(fn, repeats=3):
    """The median wall time of fn() over repeats calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def ours(folder, prompt, args, result):
    """Load, greedy decode and forward+backward with glassformer; returns the greedy ids."""
    import numpy as np
    from glassformer import backend
    from glassformer.checkpoint import load_checkpoint
    from glassformer.generate import generate_tokens
    from glassformer.layers.loss import CrossEntropyLoss
    from glassformer.optim.optimizers import AdamW
    from glassformer.train.step import train_step
    backend.set_threads(args.threads)                       # the BLAS and the overlay's pool
    t0, c0 = time.perf_counter(), time.process_time()
    model = load_checkpoint(folder).model
    result["load_s"] = round(time.perf_counter() - t0, 3)
    result["load_cpu_s"] = round(time.process_time() - c0, 3)   # on a busy machine: the fair figure
    result["params"] = model.n_parameters()
    model.eval()
    generate_tokens(model, prompt, 2, temperature=0)        # warm-up: first-call allocations
    t0, c0 = time.perf_counter(), time.process_time()
    new = generate_tokens(model, prompt, args.new_tokens, temperature=0)
    gen_s, gen_cpu = time.perf_counter() - t0, time.process_time() - c0
    result["generate"] = {"prompt": len(prompt), "new_tokens": len(new), "seconds": round(gen_s, 2),
                          "cpu_s": round(gen_cpu, 2), "tokens_per_s": round(len(new) / gen_s, 2)}
    x = np.random.default_rng(2).integers(0, model.config.vocab_size, (args.batch, args.context + 1))
    model.train()
    loss_fn = CrossEntropyLoss()

    def fwd_bwd():
        model.backward(loss_fn.backward(loss_fn.forward(model.forward(x[:, :-1]), x[:, 1:])))
    result["forward_backward_s"] = round(median_s(fwd_bwd), 3)
    optimizer = AdamW(model.get_parameters(), lr=1e-4, weight_decay=0.1)
    batch = [((x[:, :-1],), x[:, 1:])]
    steps = []
    for _ in range(2):                                      # the first also allocates Adam's m and v
        t0 = time.perf_counter()
        loss, _, _ = train_step(model, loss_fn, optimizer, iter(batch), grad_clip=1.0)
        steps.append(time.perf_counter() - t0)
    result["finetune_step"] = {"batch": args.batch, "context": args.context, "first_s": round(steps[0], 2),
                               "second_s": round(steps[1], 2), "loss": round(float(loss), 3),
                               "tokens_per_s": round(args.batch * args.context / steps[1], 1)}
    return list(new)


def theirs(folder, prompt, args):
    """The same with transformers (GPT2LMHeadModel, torch eager), or why it could not run."""
    try:
        import torch
        import transformers
    except ImportError as e:
        return {"skipped": f"transformers or torch is not importable here ({e}): our figures are alone"}
    torch.set_num_threads(args.threads)
    out = {"torch": torch.__version__, "transformers": transformers.__version__}
    t0 = time.perf_counter()
    model = transformers.GPT2LMHeadModel.from_pretrained(folder)
    out["load_s"] = round(time.perf_counter() - t0, 3)
    model.eval()
    ids = torch.tensor([prompt])
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, do_sample=False, pad_token_id=0)
        t0 = time.perf_counter()
        gen = model.generate(ids, max_new_tokens=args.new_tokens, do_sample=False, use_cache=True,
                             pad_token_id=0)
        gen_s = time.perf_counter() - t0
    new = gen[0, len(prompt):].tolist()
    out["generate"] = {"new_tokens": len(new), "seconds": round(gen_s, 2),
                       "tokens_per_s": round(len(new) / gen_s, 2)}
    model.train()
    x = torch.randint(0, model.config.vocab_size, (args.batch, args.context))

    def fwd_bwd():
        model.zero_grad()
        model(x, labels=x).loss.backward()
    out["forward_backward_s"] = round(median_s(fwd_bwd), 3)
    out["greedy_ids"] = new
    return out


def main(argv=None):
    args = parse_args(argv)
    os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import numpy as np
    from glassformer.checkpoint.hf_gpt2 import save_hf_gpt2
    from glassformer.models import build_model, lm_config

    config = lm_config("large", 50257)                      # GPT-2 small: 12 x 768, 1024 positions
    result = {"benchmark": "gpt2", "params": None, "threads": args.threads,
              "load_average_before": round(os.getloadavg()[0], 2)}
    prompt = np.random.default_rng(1).integers(0, config.vocab_size, args.prompt_len).tolist()
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        save_hf_gpt2(folder, build_model(config, np.random.default_rng(0)))
        result["write_s"] = round(time.perf_counter() - t0, 2)
        result["file_mib"] = round(os.path.getsize(os.path.join(folder, "model.safetensors")) / 2 ** 20, 1)
        ids = ours(folder, prompt, args, result)
        peer = theirs(folder, prompt, args)
    if "skipped" not in peer:
        peer["same_greedy_ids"] = peer.pop("greedy_ids") == ids
        result["ratios"] = {"load": round(result["load_s"] / peer["load_s"], 2),
                            "decode_tokens_per_s": round(result["generate"]["tokens_per_s"]
                                                         / peer["generate"]["tokens_per_s"], 2),
                            "forward_backward": round(result["forward_backward_s"]
                                                      / peer["forward_backward_s"], 2)}
    result["transformers"] = peer
    result["peak_rss_mib"] = peak_rss_mib()
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
