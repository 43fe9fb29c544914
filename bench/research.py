"""Benchmark: the research-toy acceptance figures, printed as one JSON line.

- induction: a 2-layer attention-only toy (RoPE) on repeated random tokens;
  the head classifier's best induction head and its score on held-out
  sequences (mean attention from t to t - L + 1).
- renaming: variable renaming with chains of depth 3; accuracy of the query's
  answer on held-out programs.
- reversal: encoder-decoder sequence reversal (length 8, 10 symbols); exact
  match by greedy decoding.
- gradcheck: `python -m glassformer.gradcheck` over every registered case
  (pass / fail counts).
Each experiment is its entry in glassformer.experiments.EXPERIMENTS; --only
picks some, --steps-scale shortens.
  python bench/research.py [--threads 1] [--seed 0] \\
      [--only induction renaming reversal gradcheck]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace

RESEARCH_CASES = ("RMSNorm", "NoNorm", "Rotary", "Quadratic", "Kernel", "Bilinear", "CrossAttention",
                  "DecoderBlock", "EncoderDecoder", "ToyBlock", "ToyModel")


def run_experiment(name, scale, seed):
    from glassformer.experiments import EXPERIMENTS, train
    exp = EXPERIMENTS[name]
    exp = replace(exp, steps=max(1, int(exp.steps * scale)), plots=False, seed=seed)
    start = time.perf_counter()
    _, _, summary = train(exp, None, log=lambda line: print(line, file=sys.stderr))
    summary["seconds"] = round(time.perf_counter() - start, 1)
    return summary


def gradcheck():
    """(passed, failed, research case names) from the gradcheck CLI's JSON records."""
    out = subprocess.run([sys.executable, "-m", "glassformer.gradcheck", "--json"],
                         capture_output=True, text=True)
    records = json.loads(out.stdout)
    failed = sorted({r["name"] for r in records if not r["passed"]})
    names = sorted({r["name"] for r in records})
    research = [n for n in names if n.startswith(RESEARCH_CASES)]
    return {"cases": len(names), "tensors_checked": len(records), "failed_cases": failed,
            "research_cases": research}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", default=["induction", "renaming", "reversal",
                                                      "gradcheck"])
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every step count")
    parser.add_argument("--seed", type=int, default=0, help="model initialisation and batches")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (small matrices: 1)")
    args = parser.parse_args()
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)  # before NumPy loads its BLAS
    from glassformer.experiments import EXPERIMENTS
    result = {"seed": args.seed, "blas_threads": args.threads}
    if "induction" in args.only:
        s = run_experiment("induction", args.steps_scale, args.seed)
        result["induction"] = {"induction_score": s["induction_score"],
                               "head": s["induction_head"],
                               "heads_labelled_induction": s["induction_heads_found"],
                               "test_token_acc": round(s["test_token_acc"], 4),
                               "seconds": s["seconds"]}
    if "renaming" in args.only:
        s = run_experiment("renaming", args.steps_scale, args.seed)
        result["renaming"] = {"depth": EXPERIMENTS["renaming"].task_params["depth"],
                              "answer_accuracy": s["test_answer_acc"], "n_test": s["n_test"],
                              "seconds": s["seconds"]}
    if "reversal" in args.only:
        s = run_experiment("reversal", args.steps_scale, args.seed)
        result["reversal"] = {"exact_match": s["test_exact"], "n_test": s["n_test"],
                              "seconds": s["seconds"]}
    if "gradcheck" in args.only:
        result["gradcheck"] = gradcheck()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
