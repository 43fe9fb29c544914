"""Benchmark: GPT-2 124M (random weights) through a Hugging Face folder, on the
CPU, ours beside transformers, each in its own process; one JSON line.

Writes GPT-2 small's shapes (vocab 50257, 12 layers x 768, 1024 positions,
tied head) as an HF folder (config.json + model.safetensors) to a temp dir,
then, --runs times, starts two processes together on the same folder and the
same thread count: ours (this Python) and the peer (transformers'
GPT2LMHeadModel, torch eager, in --peer-python). Each measures the load,
cached greedy generation (--new-tokens after a 16-token prompt; the ids
compared), forward+backward of batch x context (median of 3 after a
warm-up); ours also one AdamW fine-tuning step and its peak resident memory.
Our load counts the copy out of the mapped file that decoding makes at its
first use (model.in_memory(), "of_which_in_memory_s").
"ratios" are ours over theirs (times, wall and CPU; tokens/s for decoding),
"median" the medians of the runs' figures and of the per-run ratios; on a busy
machine the CPU times are the fairer figure. The load average is printed
before and after.
An OPENBLAS_CORETYPE in the environment pins OpenBLAS's kernels (README);
`env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/...` runs the ones
it picks for this CPU, and the JSON's blas_kernel names the ones that ran.
The peer needs a Python with torch and transformers (never a glassformer
dependency), e.g.
  python -m venv /work/peer-venv
  /work/peer-venv/bin/pip install torch==2.13.0 transformers numpy
given by --peer-python or $PEER_PYTHON (default: this Python, when it has
them; else our figures are alone).
  python bench/gpt2.py [--threads 1] [--runs 3] [--new-tokens 64] \\
      [--batch 1] [--context 256] [--peer-python PATH]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# run as a script, bench/ is sys.path[0], and bench/profile.py would shadow the standard library's
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--batch", type=int, default=1, help="fine-tuning batch (windows)")
    p.add_argument("--context", type=int, default=256, help="fine-tuning window length")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads, ours (backend.set_threads) and torch's (default 1)")
    p.add_argument("--runs", type=int, default=3, help="rounds, both started together (default 3)")
    p.add_argument("--one-after-the-other", action="store_true",
                   help="each round: ours, then the peer (decoding is bound by memory, which two "
                        "processes share)")
    p.add_argument("--peer-python", default=os.environ.get("PEER_PYTHON", sys.executable),
                   help="a Python with torch + transformers for the peer ($PEER_PYTHON, else this one)")
    p.add_argument("--role", choices=("ours", "theirs"), help=argparse.SUPPRESS)   # a child process
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--prompt", help=argparse.SUPPRESS)      # comma-separated ids
    return p.parse_args(argv)


def peak_rss_mib():
    """The process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def median_s(fn, repeats=3):
    """{"wall_s", "cpu_s"}: the medians of fn()'s wall and CPU times over repeats calls, after a warm-up."""
    fn()
    times = [timed(fn)[1:] for _ in range(repeats)]
    return {"wall_s": round(statistics.median(t[0] for t in times), 3),
            "cpu_s": round(statistics.median(t[1] for t in times), 3)}


def timed(fn):
    """(fn(), wall seconds, CPU seconds of this process): on a busy machine CPU time is the fairer."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def ours(args, prompt):
    """Load, greedy decode, forward+backward and a fine-tuning step with glassformer."""
    import numpy as np
    from glassformer import backend, cores
    from glassformer.checkpoint import load_checkpoint
    from glassformer.generate import generate_tokens
    from glassformer.layers.loss import CrossEntropyLoss
    from glassformer.optim.optimizers import AdamW
    from glassformer.train.step import train_step
    backend.set_threads(args.threads)                       # the BLAS and the overlay's pool
    model, map_s, map_cpu = timed(lambda: load_checkpoint(args.folder).model)
    _, copy_s, copy_cpu = timed(model.in_memory)            # the copy decoding makes at its first use
    result = {"load_s": round(map_s + copy_s, 3), "load_cpu_s": round(map_cpu + copy_cpu, 3),
              "of_which_in_memory_s": round(copy_s, 3), "params": model.n_parameters()}
    model.eval()
    generate_tokens(model, prompt, 2, temperature=0)        # warm-up: first-call allocations
    new, gen_s, gen_cpu = timed(lambda: list(generate_tokens(model, prompt, args.new_tokens, temperature=0)))
    result["generate"] = {"prompt": len(prompt), "new_tokens": len(new), "seconds": round(gen_s, 2),
                          "cpu_s": round(gen_cpu, 2), "tokens_per_s": round(len(new) / gen_s, 2)}
    x = np.random.default_rng(2).integers(0, model.config.vocab_size, (args.batch, args.context + 1))
    model.train()
    loss_fn = CrossEntropyLoss()

    def fwd_bwd():
        model.backward(loss_fn.backward(loss_fn.forward(model.forward(x[:, :-1]), x[:, 1:])))
    result["forward_backward"] = median_s(fwd_bwd)
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
    result["greedy_ids"] = new
    result["peak_rss_mib"] = peak_rss_mib()
    result["blas_kernel"] = cores.blas_kernel()             # the kernels OpenBLAS ran (README: OPENBLAS_CORETYPE)
    return result


def theirs(args, prompt):
    """The same with transformers (GPT2LMHeadModel, torch eager), or why it could not run."""
    try:
        import torch
        import transformers
    except ImportError as e:
        return {"skipped": f"transformers or torch is not importable in {sys.executable} ({e}): pass "
                "--peer-python (see --help); our figures are alone"}
    torch.set_num_threads(args.threads)
    out = {"torch": torch.__version__, "transformers": transformers.__version__}
    model, load_s, load_cpu = timed(lambda: transformers.GPT2LMHeadModel.from_pretrained(args.folder))
    out.update(load_s=round(load_s, 3), load_cpu_s=round(load_cpu, 3))
    model.eval()
    ids = torch.tensor([prompt])
    with torch.no_grad():
        model.generate(ids, max_new_tokens=2, do_sample=False, pad_token_id=0)
        gen, gen_s, gen_cpu = timed(lambda: model.generate(ids, max_new_tokens=args.new_tokens, do_sample=False,
                                                           use_cache=True, pad_token_id=0))
    new = gen[0, len(prompt):].tolist()
    out["generate"] = {"new_tokens": len(new), "seconds": round(gen_s, 2), "cpu_s": round(gen_cpu, 2),
                       "tokens_per_s": round(len(new) / gen_s, 2)}
    model.train()
    x = torch.randint(0, model.config.vocab_size, (args.batch, args.context))

    def fwd_bwd():
        model.zero_grad()
        model(x, labels=x).loss.backward()
    out["forward_backward"] = median_s(fwd_bwd)
    out["greedy_ids"] = new
    return out


def child_argv(args, python, role, folder, prompt):
    """The command line of one child process measuring `role` on `folder`."""
    return [python, str(Path(__file__).resolve()), "--role", role, "--folder", folder,
            "--prompt", ",".join(map(str, prompt)), "--threads", str(args.threads),
            "--new-tokens", str(args.new_tokens), "--batch", str(args.batch),
            "--context", str(args.context)]


def start(argv, env, out):
    """A child process writing to out, or why it could not start (a missing --peer-python)."""
    try:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    except OSError as e:
        return f"cannot run {argv[0]} ({e.strerror or e}): give a Python with torch and transformers"


def run_round(args, folder, prompt):
    """(ours, theirs): both children started at once (or one after the other), their JSON lines read
    when both ended."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads),
               MKL_NUM_THREADS=str(args.threads))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryFile("w+") as out_a, tempfile.TemporaryFile("w+") as out_b:
        procs = []
        for python, role, out in ((sys.executable, "ours", out_a), (args.peer_python, "theirs", out_b)):
            procs.append(start(child_argv(args, python, role, folder, prompt), env, out))
            if args.one_after_the_other and not isinstance(procs[-1], str):
                procs[-1].wait()
        results = []
        for proc, out, who in zip(procs, (out_a, out_b), ("ours", "theirs")):
            if isinstance(proc, str):
                results.append({"skipped": f"{who}: {proc}"})
                continue
            proc.wait()
            out.seek(0)
            text = out.read()
            last = text.strip().splitlines()[-1:] or [""]
            if proc.returncode != 0 or not last[0].startswith("{"):
                results.append({"skipped": f"{who} exited with status {proc.returncode}: "
                                + " | ".join(text.strip().splitlines()[-5:])})
            else:
                results.append(json.loads(last[0]))
    return results


def ratios(mine, peer):
    """ours over theirs: times (wall and CPU; lower is ours faster), and tokens/s for decoding (higher)."""
    a, b = flat(mine), flat(peer)
    return {"load": round(a["load_s"] / b["load_s"], 3),
            "load_cpu": round(a["load_cpu_s"] / b["load_cpu_s"], 3),
            "decode_tokens_per_s": round(a["decode_tokens_per_s"] / b["decode_tokens_per_s"], 3),
            "decode_cpu": round(a["decode_cpu_s"] / b["decode_cpu_s"], 3),
            "forward_backward": round(a["forward_backward_s"] / b["forward_backward_s"], 3),
            "forward_backward_cpu": round(a["forward_backward_cpu_s"] / b["forward_backward_cpu_s"], 3)}


def medians(rows):
    """{name: median} over a list of flat {name: number} dicts."""
    return {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}


def flat(r):
    """The headline figures of one side's result (decode_cpu_s: CPU seconds of the whole decode)."""
    return {"load_s": r["load_s"], "load_cpu_s": r["load_cpu_s"],
            "decode_tokens_per_s": r["generate"]["tokens_per_s"], "decode_cpu_s": r["generate"]["cpu_s"],
            "forward_backward_s": r["forward_backward"]["wall_s"],
            "forward_backward_cpu_s": r["forward_backward"]["cpu_s"]}


def main(argv=None):
    args = parse_args(argv)
    if args.role:                                           # a child: measure one side, print its JSON
        prompt = [int(t) for t in args.prompt.split(",")]
        print(json.dumps(ours(args, prompt) if args.role == "ours" else theirs(args, prompt)))
        return 0
    os.environ["OPENBLAS_NUM_THREADS"] = "1"                # the folder's writer: one thread is enough
    sys.path.insert(0, str(ROOT / "src"))
    import numpy as np
    from glassformer.checkpoint.hf_gpt2 import save_hf_gpt2
    from glassformer.models import build_model, lm_config
    config = lm_config("large", 50257)                      # GPT-2 small: 12 x 768, 1024 positions
    result = {"benchmark": "gpt2", "threads": args.threads, "runs": [],
              "one_after_the_other": args.one_after_the_other,
              "peer_python": args.peer_python, "load_average_before": round(os.getloadavg()[0], 2)}
    prompt = np.random.default_rng(1).integers(0, config.vocab_size, args.prompt_len).tolist()
    with tempfile.TemporaryDirectory() as folder:
        save_hf_gpt2(folder, build_model(config, np.random.default_rng(0)))
        result["file_mib"] = round(os.path.getsize(os.path.join(folder, "model.safetensors")) / 2 ** 20, 1)
        for i in range(args.runs):
            mine, peer = run_round(args, folder, prompt)
            if "skipped" not in peer and "skipped" not in mine:
                peer["same_greedy_ids"] = peer.pop("greedy_ids") == mine["greedy_ids"]
                mine["ratios"] = ratios(mine, peer)
            mine.pop("greedy_ids", None)
            result["runs"].append({"ours": mine, "transformers": peer})
            said = mine.get("ratios") or mine.get("skipped") or peer.get("skipped")
            print(f"run {i + 1}/{args.runs}: {json.dumps(said)}",
                  file=sys.stderr, flush=True)
    done = [r for r in result["runs"] if "ratios" in r["ours"]]
    if done:
        result["median"] = {"ours": medians([flat(r["ours"]) for r in done]),
                            "transformers": medians([flat(r["transformers"]) for r in done]),
                            "ratios": medians([r["ours"]["ratios"] for r in done]),
                            "same_greedy_ids": all(r["transformers"]["same_greedy_ids"] for r in done)}
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
