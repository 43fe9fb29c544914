"""--task qa's run, built, resumed and summarised: a decoder LM fine-tuned on question-answer pairs.

  python train_step_by_step.py --task qa --data qa.jsonl --tokenizer char --preset tiny --steps 300
  python train_step_by_step.py --task qa --data qa.jsonl --init-from runs/wiki/best.npz \\
      --mix-data wiki.xml.bz2 --mix-ratio 0.25
Each pair is taught as "Question: {q}\\nAnswer: {a}\\n" (and the end-of-text token), the template
test_model_manually.py --chat sends; only the answer's tokens count in the loss. --mix-data fills a
share of each batch's rows with plain text windows (every token counted). Each validation pass
answers held-out pairs greedily and reports the share answered exactly.
"""
import contextlib
import itertools
from pathlib import Path

import numpy as np

from ..checkpoint import load_checkpoint
from ..data import build_tokens, open_source, random_windows, require_known, require_tokens, window_minimum
from ..data.fetch import resolve_dataset
from ..errors import UserError
from ..generate import TextStream, eos_id, special_ids, stream_tokens
from ..layers.loss import CrossEntropyLoss
from ..tasks.base import IGNORE
from ..tasks.qa import (answer_of, answer_text, masked_example, pad_rows, prompt_text, read_pairs,
                        split_pairs, ANSWER_END)
from ..tokenizers import ByteLevelBPE, CharTokenizer, tokenizer_from_dict
from ..train.trainer import Trainer
from .lm import (FLAG_DEFAULTS, build_tokenizer, check_memory, make_trainer, resolve_lm_settings,
                 starting_model, starting_tokenizer)

QA_DEFAULTS = dict(FLAG_DEFAULTS, mix_data=None, mix_ratio=None, eval_pairs=100)
SHOWN_ANSWERS = 5                                           # held-out answers printed at the end




def resolve_qa_settings(args):
    """(settings, checkpoint or None): the --task lm settings plus --mix-data/--mix-ratio/--eval-pairs."""
    s, ckpt = resolve_lm_settings(args, "qa", QA_DEFAULTS, example='qa.jsonl (lines of {"question": '
                                  '"...", "answer": "..."})')
    if s["mix_data"] is None:
        if s["mix_ratio"] is not None:
            raise UserError("--mix-ratio needs --mix-data FILE: the text its rows are windows of")
    else:
        s["mix_data"] = str(Path(resolve_dataset(s["mix_data"], "--mix-data")).resolve())
        s["mix_ratio"] = 0.25 if s["mix_ratio"] is None else s["mix_ratio"]
    return s, ckpt


# ---- pairs as ids ---------------------------------------------------------------------------

def qa_tokenizer(s, pairs, stream):
    """char (the characters of the taught texts and --mix-data, and <eos>), BPE trained on them, or as
    --task lm builds it (gpt2, a file)."""
    if s["tokenizer"] not in ("char", "bpe"):
        return build_tokenizer(s["tokenizer"], s["data"], s["bpe_vocab"], stream)
    texts = [prompt_text(p.question) + answer_text(p.answer) for p in pairs]
    mix = open_source(s["mix_data"]) if s["mix_data"] else ()
    if s["tokenizer"] == "char":
        return CharTokenizer(sorted(set(itertools.chain.from_iterable(itertools.chain(texts, mix)))),
                             specials=("<eos>",))
    print(f"training a byte-level BPE of {s['bpe_vocab']} tokens on the pairs ...", file=stream, flush=True)
    return ByteLevelBPE.train(itertools.chain(texts, mix), s["bpe_vocab"], progress=True)


def encode_pairs(pairs, tok, context):
    """The (x, y) id lists of each pair (answer ids, then eos, are its targets); UserError naming the
    pair's file:line when it cannot be encoded or does not fit the context."""
    eos, examples = eos_id(tok), []
    for p in pairs:
        try:
            prompt, answer = tok.encode(prompt_text(p.question)), tok.encode(answer_text(p.answer))
        except UserError as e:
            raise UserError(f"{p.where}: {e}") from None
        answer += [] if eos is None else [eos]
        if len(prompt) + len(answer) - 1 > context:
            raise UserError(f"{p.where}: the question and its answer are {len(prompt) + len(answer)} tokens, "
                            f"more than --context {context} + 1: use a larger --context or a shorter pair")
        examples.append(masked_example(prompt, answer))
    return examples


def qa_batches(examples, batch_size, context, mix=None, mix_ratio=0.0, pad_id=0):
    """A batches(rng) -> (x, y) function: random pairs padded to the longest one (to the context when
    mixing), and on average mix_ratio of the rows random windows of the `mix` tokens (full loss)."""
    share = mix_ratio * batch_size

    def batches(rng):
        n_mix = 0 if mix is None else min(batch_size - 1, int(share) + int(rng.random() < share % 1))
        chosen = [examples[i] for i in rng.integers(0, len(examples), size=batch_size - n_mix)]
        x, y = pad_rows(chosen, context if n_mix else max(len(e[0]) for e in chosen), pad_id)   # (B', T)
        if n_mix:
            xm, ym = random_windows(mix, n_mix, context, rng)   # (n_mix, T)
            x, y = np.concatenate([x, xm]), np.concatenate([y, ym])
        return x, y
    return batches


# ---- exact match ------------------------------------------------------------------------------

def greedy_answer(model, tok, question, max_tokens):
    """(the model's greedy answer, whether it ended within max_tokens: the end marker or end of text)."""
    eos, text, reply = eos_id(tok), TextStream(tok), ""
    new = stream_tokens(model, tok.encode(prompt_text(question)), max_tokens, temperature=0, eos_id=eos,
                        banned=special_ids(tok, keep=eos), vocab_size=tok.vocab_size)
    with contextlib.closing(new):
        for i in new:
            if i == eos:
                return answer_of(reply), True
            reply += text.push(i)
            if ANSWER_END in reply:
                return answer_of(reply), True
    return answer_of(reply + text.flush()), False


def answers(model, tok, pairs):
    """[(answer given, exact?)] per pair: exact when it ended and equals the pair's answer, stripped."""
    out = []
    for p in pairs:
        budget = len(tok.encode(answer_text(p.answer))) + 8   # room for another split of the same text
        got, ended = greedy_answer(model, tok, p.question, budget)
        out.append((got, ended and got == p.answer))
    return out


def exact_match(model, tok, pairs):
    """The share of pairs answered exactly (None for no pairs)."""
    return sum(ok for _, ok in answers(model, tok, pairs)) / len(pairs) if pairs else None


class QATrainer(Trainer):
    """The Trainer, with the exact-match share of held-out answers in every validation pass."""

    def __init__(self, *args, held_out=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.held_out = list(held_out)                      # the pairs answered at each pass

    def evaluate(self):
        metrics = super().evaluate()
        tok = tokenizer_from_dict(self.tokenizer)
        metrics["val_exact_match"] = em = exact_match(self.model, tok, self.held_out)
        self.say(f"step {self.step}: exact match {em:.4f} on {len(self.held_out)} held-out pairs (greedy)")
        return metrics


# ---- the run ----------------------------------------------------------------------------------

def load_pairs(s):
    """(train, held out, test or None) pairs: --val-data, or the last 10% of --data, is held out."""
    pairs = read_pairs(s["data"])
    train, val = (pairs, read_pairs(s["val_data"])) if s["val_data"] else split_pairs(pairs)
    return train, val, read_pairs(s["test_data"]) if s["test_data"] else None


def build_qa_trainer(s, out, stream, ckpt=None, peak_flops=None):
    """(trainer, tokenizer, (train, held-out, test) pairs) for settings s; on resume from the checkpoint."""
    train, val, test = load_pairs(s)
    tok, init = starting_tokenizer(s, ckpt, lambda: qa_tokenizer(s, train + val + (test or []), stream))
    check_memory(s, ckpt, init, tok)
    model = starting_model(s, ckpt, init, tok)
    T, B, eos = s["context"], s["batch_size"], eos_id(tok)
    train_ex, val_ex = encode_pairs(train, tok, T), encode_pairs(val, tok, T)
    encode_pairs(test or [], tok, T)                        # its mistakes now, not after training
    mix = None if s["mix_data"] is None else \
        build_tokens([open_source(s["mix_data"])], tok, eot_id=eos, progress=True)[0]
    if mix is not None:                                     # windows of it: context + 1 tokens at least
        require_tokens(len(mix), window_minimum(T), f"--mix-data {s['mix_data']}", "the text", tok)
        require_known(mix, tok, f"--mix-data {s['mix_data']}", "the text")
    pad = 0 if eos is None else eos                         # ignored in y: any id would do
    task = {"name": "qa", "settings": s, "context": T, "n_train_pairs": len(train), "n_val_pairs": len(val),
            "n_test_pairs": None if test is None else len(test),
            "n_mix_tokens": None if mix is None else len(mix)}
    trainer = make_trainer(s, out, stream, model, CrossEntropyLoss(ignore_index=IGNORE),
                           qa_batches(train_ex, B, T, mix, s["mix_ratio"] or 0.0, pad),
                           qa_batches(val_ex, B, T, pad_id=pad), tok, task, ckpt, peak_flops,
                           trainer_class=QATrainer, held_out=val[:s["eval_pairs"]])
    return trainer, tok, (train, val, test)


def final_report(model, tok, train, val, test, n_train):
    """Exact match of best.npz on every held-out (and test) pair and the first n_train training pairs."""
    given = answers(model, tok, val)
    report = {"val_exact_match": sum(ok for _, ok in given) / len(val),
              "train_exact_match": exact_match(model, tok, train[:n_train]),
              "answers": [{"question": p.question, "answer": p.answer, "given": got, "exact": ok}
                          for p, (got, ok) in zip(val[:SHOWN_ANSWERS], given)]}
    if test is not None:
        report["test_exact_match"] = exact_match(model, tok, test)
    return report




def qa_report(trainer, tok, pairs, s, out, summary):
    """What summary.json adds for --task qa: best.npz's exact match on every held-out, test and the
    first --eval-pairs training pairs (a stopped run: the last validation pass's share only)."""
    if (out / "best.npz").exists() and not summary["interrupted"]:
        best = load_checkpoint(out / "best.npz", optimizer=False).model
        train, val, test = pairs
        return final_report(best, tok, train, val, test, s["eval_pairs"])
    return {"val_exact_match": next((r["val_exact_match"] for r in reversed(trainer.history)
                                     if r.get("val_exact_match") is not None), None)}   # the last pass
