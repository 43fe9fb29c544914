"""--task qa of train_step_by_step.py: its flags and what it prints (the run itself: runner/qa.py)."""
import textwrap
from pathlib import Path

from ..runner.lm_data import DATA_KEYS, check_text, refuse_special
from ..runner.qa import QATrainer, build_qa_trainer, qa_report, resolve_qa_settings  # noqa: F401
from ..train.progress import wrap
from .common import FRACTION, Domain, matmul_rate, run_dir
from .lm import claim_and_fit, print_lm_summary, print_speed, run_exit, write_summary

QA_FLAGS = (
    ("--mix-data", Path, "FILE", "plain text mixed in (any --data of --task lm): --mix-ratio of each batch's "
     "rows are windows of it, every token counted in the loss"),
    ("--mix-ratio", FRACTION, "R", "share of each batch's rows taken from --mix-data, in [0, 1) "
     "(default 0.25)"),
    ("--eval-pairs", Domain(int, 1, 10**6), "N", "held-out pairs answered greedily at each validation pass for the "
     "exact-match score (default 100; at the end, all of them)"),
)


def add_qa_arguments(parser):
    """The flags only --task qa reads (it reads every --task lm flag too); returns their dests."""
    g = parser.add_argument_group("--task qa", textwrap.fill(
        "a decoder LM fine-tuned on question-answer pairs, the loss on the answers only; --data, "
        "--val-data (default: the last 10% of --data) and --test-data are .jsonl files of "
        '{"question": ..., "answer": ...} lines or .tsv files of question<TAB>answer lines; '
        "every --task lm flag applies too (--init-from, --tokenizer, --preset, --steps, ...)", 78))
    for flag, kind, metavar, text in QA_FLAGS:
        g.add_argument(flag, type=kind, metavar=metavar, help=text)
    return [a.dest for a in g._group_actions]


def run_qa(args, argv, stream):
    """Fine-tune on question-answer pairs from the flags; exit code."""
    s, ckpt = resolve_qa_settings(args)
    for key in DATA_KEYS:
        if s[key] is not None:
            refuse_special(s[key])                          # before the run directory is made
    if s["mix_data"] is not None:
        check_text(s["mix_data"])
    out = run_dir(args, "qa")
    trainer, tok, (train, val, test) = build_qa_trainer(s, out, stream, ckpt, peak_flops=matmul_rate())
    source = f"{s['preset']} preset" if s.get("preset") else f"from {s['init_from']}"
    print(wrap(f"task qa: {len(train):,} training and {len(val):,} held-out pairs of {s['data']}"
               + (f"\n  {s['mix_ratio']:.0%} of the rows from {s['mix_data']}" if s["mix_data"] else "")
               + f"\n  {tok.type} tokenizer of {tok.vocab_size:,} tokens; {source}, "
               f"{trainer.model.n_parameters():,} parameters, context {s['context']}\nrun directory {out}"
               + (f"; resuming after step {trainer.step}" if ckpt else ""), indent="    "), file=stream)
    print_speed(trainer, s["context"], stream)
    summary = claim_and_fit(trainer, s, args, out, ckpt, "qa")
    report = qa_report(trainer, tok, (train, val, test), s, out, summary)   # exact match of best.npz
    write_summary(summary, trainer, s, args, argv, out, "qa", sample=None, **report)
    print_qa_summary(summary, stream)
    print_lm_summary(summary, out, stream)
    return run_exit(summary)


def print_qa_summary(summary, stream):
    """The exact-match figures of best.npz and a few of its held-out answers."""
    if summary.get("train_exact_match") is None:
        return
    test = summary.get("test_exact_match")
    print(wrap(f"exact match (best.npz, greedy): held out {summary['val_exact_match']:.4f}, training "
               f"{summary['train_exact_match']:.4f}" + ("" if test is None else f", test {test:.4f}")),
          file=stream)
    for a in summary["answers"]:
        print(wrap(f"  {'ok ' if a['exact'] else 'no '} Q: {a['question']}  A: {a['given']!r}"
                   + ("" if a["exact"] else f" (expected {a['answer']!r})"), indent=" " * 8), file=stream)
