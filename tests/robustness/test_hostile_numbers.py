"""Hostile numbers (root cause "numbers"): every numeric flag of every command, and the REPL's `set`.

The cases are generated from the parsers themselves: each command's ArgumentParser is caught as it
is built, every option whose type turns "1", "7", "0.5"... into a number is a numeric flag, and each
gets every value of HOSTILE, typed and (train_step_by_step.py) through a --config file. A case is
judged by the shared judge: refused with one `error:` line, or accepted and finished within BOUND_S
seconds on tiny sizes. A refused value never starts work, so most cases are parsing only; an accepted
value runs the command once per (flag, parsed value).
"""
import argparse
import contextlib
import io
import json
import os
import time
from pathlib import Path

import pytest

from hostile import judge
from test_fuzz import Hang, deadline          # one deadline for every fuzz suite

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "checkpoints"
# an accepted value's run takes at most this (a tiny run is 1-2 s; a loaded machine needs margin)
BOUND_S = float(os.environ.get("GLASSFORMER_HOSTILE_BOUND_S") or 20)
# the values, and more of the same kinds: huge, negative, subnormal, not finite, not decimal
# (" 2": padded digits are accepted; every numeric flag takes " 2" exactly when it takes " 7", and its run
#  is the smaller one: fewer epochs, arguments, threads)
HOSTILE = [str(2**62), str(2**63), str(10**30), str(10**400), "-1", "-5", "0", "1e-320", "5e-324",
           "1e-310", "nan", "inf", "-inf", "1e999", "0x10", "1_000", "", " 2", "\u0663", "3.5"]
PROBES = ("1", "7", "0.5", "0", "300", "2")                 # a numeric type takes one of these
TEXT = "the cat sat on the mat. the dog sat on the log.\n" * 40
QA_PAIRS = [{"question": f"what is {i}?", "answer": f"{i}"} for i in range(12)]


class _Caught(BaseException):
    """Raised from inside parse_known_args to take the parser out of whatever built it."""



def parser_of(build):
    """The ArgumentParser that build() parses with (caught at parse time, so any command works)."""
    seen, real = [], argparse.ArgumentParser.parse_known_args

    def catch(self, *a, **k):
        seen.append(self)
        raise _Caught
    argparse.ArgumentParser.parse_known_args = catch
    try:
        built = build()
    except _Caught:
        built = None
    finally:
        argparse.ArgumentParser.parse_known_args = real
    return seen[0] if seen else built


def numeric(action):
    """True when the option's type turns some plain digits into a number (its values are numbers)."""
    if not action.option_strings or action.type is None or action.nargs == 0:
        return False
    for probe in PROBES:
        try:
            value = action.type(probe)
        except Exception:                                   # noqa: BLE001  any refusal: try the next
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
    return False


def numeric_flags(parser):
    """(flag, dest) of every numeric option of the parser."""
    return [(max(a.option_strings, key=len), a.dest) for a in parser._actions if numeric(a)]


def must_refuse(text):
    """Values no numeric flag here may take: outside every domain, or not a decimal number."""
    return text.strip() not in ("0", "2", "3.5")




def call(main, *args, **kw):
    """(exit status, stderr, hung) of main(*args) in this process, bounded by BOUND_S."""
    err = io.StringIO()
    try:
        with deadline(BOUND_S), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            rc = main(*args, **kw)
    except Hang:
        return None, err.getvalue(), True
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 2
    except BaseException as e:                              # noqa: BLE001  an escape is a crash
        return 1, err.getvalue() + f"\nTraceback (most recent call last):\n{type(e).__name__}: {e}\n", False
    return rc, err.getvalue(), False


def parses(parse, argv):
    """The namespace when parse(argv) accepts argv, None when it refuses it."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return parse(argv)
    except BaseException:                                   # noqa: BLE001  UserError, SystemExit...
        return None


# ---------------------------------------------------------------- the commands, on tiny sizes

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A small text, a small Q&A file and a folder for runs."""
    d = tmp_path_factory.mktemp("hostile-numbers")
    (d / "text.txt").write_text(TEXT)
    (d / "qa.jsonl").write_text("".join(json.dumps(p) + "\n" for p in QA_PAIRS))
    return d


@pytest.fixture(scope="module")
def quick():
    """The training commands without their 0.2 s GEMM timing and their loss plots (not judged here)."""
    from glassformer import visualization
    from glassformer.cli import lm, qa
    from glassformer.train import trainer
    saved = lm.matmul_rate, qa.matmul_rate, trainer.plot_curves, visualization.plot_curves
    lm.matmul_rate = qa.matmul_rate = lambda *a, **k: 1e9
    trainer.plot_curves = visualization.plot_curves = lambda rows, path, **k: path
    yield
    lm.matmul_rate, qa.matmul_rate, trainer.plot_curves, visualization.plot_curves = saved


def train_base(dest, only, d):
    """train_step_by_step.py's tiny run for a flag: the task that reads it, one step or epoch."""
    tasks = only.get(dest, ("lm",))
    common = ["--no-interactive", "--out", str(d / "run"), "--seed", "0"]
    if "lm" in tasks:
        return ["--task", "lm", "--data", str(d / "text.txt"), "--steps", "1", "--batch-size", "2",
                "--context", "8", "--eval-interval", "0", "--eval-batches", "1"] + common
    if "qa" in tasks:
        return ["--task", "qa", "--data", str(d / "qa.jsonl"), "--steps", "1", "--batch-size", "2",
                "--context", "48", "--eval-interval", "0", "--eval-batches", "1", "--eval-pairs", "1",
                "--mix-data", str(d / "text.txt")] + common
    if "sentences" in tasks:
        return ["--task", "sentences", "--epochs", "1"] + common
    return ["--task", "digits", "--size", "small", "--epochs", "1", "--batch-size", "256"] + common


def sub_parser(parser, name):
    """The parser of sub-command `name` (python -m glassformer.lessons check)."""
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]


def commands():
    """(name, parser builder, main) of every command with numeric flags."""
    from glassformer.cli import evaluate, gradcheck, interp, lessons, repl, train
    from glassformer.errors import run_main

    def boundary(main):                                     # as `python -m glassformer.X` runs main
        return lambda argv: run_main(main, argv)
    return {"train": (train.build_parser, train.main),
            "lessons": (lambda: sub_parser(parser_of(lambda: lessons.parse_args(["check", "01"])), "check"),
                        boundary(lessons.main)),
            "repl": (lambda: repl.parse_args(["--help"]), repl.main),
            "evaluate": (evaluate.build_parser, evaluate.main),
            "gradcheck": (lambda: gradcheck.main(["--help"]), boundary(gradcheck.main)),
            "interp": (lambda: interp.main(["x", "--help"]), boundary(interp.main))}


def base_argv(name, dest, parser, d):
    """The rest of a tiny, quick command line around the flag under test."""
    if name == "train":
        return train_base(dest, getattr(parser, "only", {}), d)
    if name == "repl":
        return ["--checkpoint", str(CKPT / "shakespeare_char.npz"), "--prompt", "RO", "--max-new-tokens", "2"]
    if name == "evaluate":
        return [str(CKPT / "shakespeare_char.npz"), "--data", str(d / "text.txt"), "--max-tokens", "64"]
    if name == "gradcheck":
        return ["--layer", "Linear"]
    if name == "lessons":
        return ["check", "01", "--solutions"]
    return [str(CKPT / "digits.npz")]                       # interp


def cases():
    """(command, flag, dest, value, how) for every numeric flag and hostile value."""
    out = []
    for name, (build, _) in commands().items():
        parser = parser_of(build)
        for flag, dest in numeric_flags(parser):
            for value in HOSTILE:
                out.append((name, flag, dest, value, "typed"))
                if name == "train":
                    out.append((name, flag, dest, value, "config"))
    return out


CASES = cases()
RUNS = {}                                                   # (command, dest, parsed value) -> outcome


def config_value(text):
    """The value as a config file holds it: a JSON number when it is one, else a string."""
    try:
        return json.loads(text) if text.strip() and text.strip()[0] in "-0123456789" and "_" not in text \
            else text
    except ValueError:
        return text


@pytest.mark.parametrize("name, flag, dest, value, how", CASES,
                         ids=[f"{c[0]}-{c[1]}-{c[3][:12]!r}-{c[4]}" for c in CASES])
def test_a_hostile_number_is_refused_or_harmless(name, flag, dest, value, how, files, quick):
    build, main = commands()[name]
    parser = parser_of(build)
    argv = base_argv(name, dest, parser, files)
    if how == "config":
        config = files / f"config-{dest}.json"
        config.write_text(json.dumps({dest: config_value(value)}))
        argv = ["--config", str(config)] + argv
    else:
        argv = argv + [f"{flag}={value}"]
    if how == "typed":
        parsed = parses(parser.parse_args, argv)
    else:
        from glassformer.cli.config import parse_with_config
        parsed = parses(lambda words: parse_with_config(parser, words), argv)
    key = (name, dest, getattr(parsed, dest)) if parsed is not None else (name, dest, value, how)
    if key not in RUNS:                                     # a refusal is quick; a run is done once
        RUNS[key] = call(main, argv)
    rc, err, hung = RUNS[key]
    judge("numbers", rc, err, must_refuse=must_refuse(value), hung=hung)


# ---------------------------------------------------------------- experiments KEY=VALUE

def run_fields():
    """The numeric fields of an experiment run (steps, lr, batch_size...), from the dataclass itself."""
    from dataclasses import fields

    from glassformer.experiments import Experiment
    return [f.name for f in fields(Experiment) if f.type in (int, float, "int", "float")]


@pytest.mark.parametrize("key", run_fields())
@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_experiment_setting_is_refused_or_harmless(key, value):
    """KEY=VALUE of python -m glassformer.experiments, up to the built Experiment (a run is not started)."""
    from glassformer.errors import run_main
    from glassformer.experiments import EXPERIMENTS, with_overrides
    rc, err, hung = call(run_main, lambda: with_overrides(EXPERIMENTS["induction"], [f"{key}={value}"])
                         and 0)
    judge("numbers", rc, err, must_refuse=must_refuse(value) or (value.strip() == "3.5" and key in (
        "steps", "batch_size", "warmup", "eval_every", "seed", "curriculum_steps")), hung=hung)


# ---------------------------------------------------------------- the REPL's set, the generate API

SET_NAMES = ("temperature", "top_k", "top_p", "max_tokens")


@pytest.mark.parametrize("setting", SET_NAMES)
@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_set_value_is_refused_or_harmless(setting, value):
    from glassformer.cli import repl
    stdin = io.StringIO(f"set {setting} {value}\nRO\n")
    rc, err, hung = call(repl.main, ["--checkpoint", str(CKPT / "shakespeare_char.npz"), "--max-new-tokens",
                                     "2"], stdin=stdin)
    refused = rc == 0 and err.startswith("error: set ")      # the loop goes on after a bad `set`
    judge("numbers", 2 if refused else rc, err, must_refuse=must_refuse(value) or value.strip() == "3.5"
          and setting in ("top_k", "top_p", "max_tokens"), hung=hung)


@pytest.mark.parametrize("value", [0, 5e-324, 1e-310, 1e-320, 1e-5, 1e-4, 0.8, 100.0, 1e300,
                                   float("inf"), float("nan"), -1.0, -0.0])
def test_the_generate_api_keeps_the_temperature_contract(value):
    """temperature 0 is greedy, 1e-4..100 samples, anything else is a ValueError (and a UserError)."""
    from glassformer.checkpoint import load_checkpoint
    from glassformer.errors import UserError
    from glassformer.generate import generate_tokens
    model = load_checkpoint(CKPT / "shakespeare_char.npz", optimizer=False).model
    if value == 0 or 1e-4 <= value <= 100:
        ids = generate_tokens(model, [1, 2], 3, temperature=value, seed=0)
        assert len(ids) == 3 and all(0 <= i < model.config.vocab_size for i in ids)
        return
    with pytest.raises(ValueError, match="temperature") as caught:
        generate_tokens(model, [1, 2], 3, temperature=value, seed=0)
    assert isinstance(caught.value, UserError)


@pytest.mark.parametrize("kw", [dict(top_k=0), dict(top_k=-5), dict(top_k=2**63), dict(top_k=3.5),
                                dict(top_p=0.0), dict(top_p=1.5), dict(top_p=float("nan")),
                                dict(seed=-1), dict(seed=-5), dict(seed=2**64), dict(top_p=5e-324)])
def test_the_generate_api_refuses_each_knob_outside_its_domain(kw):
    from glassformer.checkpoint import load_checkpoint
    from glassformer.generate import generate_tokens
    model = load_checkpoint(CKPT / "shakespeare_char.npz", optimizer=False).model
    name = next(iter(kw))
    with pytest.raises(ValueError, match=name):
        generate_tokens(model, [1, 2], 2, temperature=0.8, **kw)


# ---------------------------------------------------------------- what the domains promise

def test_every_numeric_flag_declares_its_domain_and_help_states_it():
    """Each numeric flag's type is a Domain with a stated maximum, and --help shows it."""
    from glassformer.domains import Domain
    for name, (build, _) in commands().items():
        parser = parser_of(build)
        flags = numeric_flags(parser)
        assert flags, name
        for flag, _ in flags:
            action = next(a for a in parser._actions if flag in a.option_strings)
            assert isinstance(action.type, Domain), f"{name} {flag}: type {action.type!r} has no domain"
        text = parser.format_help()
        assert all(next(a for a in parser._actions if f in a.option_strings).type.text.split()[-1] in text
                   for f, _ in flags), name


def test_a_batch_beyond_free_memory_is_one_error_before_any_allocation(files, quick, monkeypatch):
    """--batch-size x --context whose activations exceed the free memory: one line naming the estimate."""
    from glassformer import domains
    from glassformer.cli import train
    monkeypatch.setattr(domains, "available_memory", lambda: 64 * 2**20)
    argv = train_base("batch_size", {}, files) + ["--batch-size", "4096", "--context", "256", "--out",
                                                  str(files / "memory-run")]
    start = time.perf_counter()
    rc, err, hung = call(train.main, argv)
    judge("numbers", rc, err, must_refuse=True, hung=hung)
    assert "GiB" in err and "--batch-size" in err and "--context" in err
    assert time.perf_counter() - start < 10 and not (files / "memory-run").exists()
