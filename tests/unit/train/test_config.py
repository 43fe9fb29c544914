"""TrainConfig declares each training setting once: one name, one default, its help, domain and resume rule."""
import json
import re
import shutil
from dataclasses import asdict, fields

import numpy as np
import pytest

from glassformer.cli import train
from glassformer.domains import Domain, DomainError
from glassformer.runner import epochs, lm as run_lm
from glassformer.train import config as settings
from glassformer.train.config import RULES, TrainConfig


def flag_fields():
    return [f for f in fields(TrainConfig) if f.metadata["flag"]]


def test_every_setting_has_help_a_domain_and_a_resume_rule():
    for f in fields(TrainConfig):
        meta = f.metadata
        assert isinstance(meta["help"], str) and len(meta["help"]) > 20, f.name
        assert meta["resume"] in RULES, f.name
        if f.name == "out_dir":
            continue                                        # a folder, not a number
        assert isinstance(meta["domain"], Domain), f.name
        assert f.default is None or meta["domain"].inside(f.default), f.name
    with pytest.raises(DomainError, match="grad_accum=0 must be a whole number from 1 to 65,536"):
        TrainConfig(grad_accum=0)                           # the flag's domain is the library's


def test_the_parsers_defaults_are_the_fields():
    """Every flag setting is a flag of that name, typed by its domain, whose left-out value (FLAG_DEFAULTS,
    digits' DEFAULTS) is the field's default; and a run of default flags trains TrainConfig()."""
    actions = {a.dest: a for a in train.build_parser()._actions}
    for f in flag_fields():
        action = actions[f.name]
        assert action.option_strings == ["--" + f.name.replace("_", "-")] and action.type is f.metadata["domain"]
        assert run_lm.FLAG_DEFAULTS[f.name] == f.default, f.name
        said = re.search(r"\(default ([0-9][0-9.e-]*)[;)]", action.help)   # what --help says, if a number
        assert said is None or float(said[1]) == f.default, (f.name, action.help)
    assert (epochs.DEFAULTS["lr"], epochs.DEFAULTS["seed"]) == (TrainConfig().lr, TrainConfig().seed)
    run = asdict(run_lm.train_config(dict(run_lm.FLAG_DEFAULTS), None))
    assert run == dict(asdict(TrainConfig()), checkpoint_interval=TrainConfig().eval_interval)
    assert (TrainConfig().steps, TrainConfig().eval_interval) == (1000, 100)   # the CLI's defaults won


def test_the_resume_rules_say_what_resume_may_change():
    assert run_lm.MAY_CHANGE[:6] == ("steps", "eval_interval", "log_interval", "sample_every", "max_time",
                                     "zero_stage")
    assert settings.schedule_names() == ("steps", "warmup", "lr", "min_lr")
    assert {n for n in ("grad_accum", "weight_decay", "beta1", "beta2", "grad_clip", "eval_batches", "seed")
            if settings.resume_rule(n) == "fixed"} == {"grad_accum", "weight_decay", "beta1", "beta2",
                                                       "grad_clip", "eval_batches", "seed"}


def test_a_train_config_saved_with_the_old_names_reads_as_the_new():
    old = {"steps": 40, "warmup_steps": 7, "accum_steps": 3, "max_time": 0.0, "lr": 2e-3, "retired": 1}
    c = TrainConfig.from_dict(old)
    assert (c.steps, c.warmup, c.grad_accum, c.max_time, c.min_lr) == (40, 7, 3, None, 2e-4)


# ---- --resume of a run the old code wrote ------------------------------------------------------

def as_the_old_code_wrote_it(path):
    """Rewrite a checkpoint's train_config with the names the code before the one-name change saved."""
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    meta = json.loads(members["__meta__"].tobytes())
    t = meta["extra"]["train_config"]
    t["accum_steps"], t["warmup_steps"] = t.pop("grad_accum"), t.pop("warmup")
    t["max_time"] = t["max_time"] or 0.0
    members["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **members)


def test_resume_of_an_old_run_keeps_its_warm_up(tmp_path):
    """--warmup 100 in a 2-step run plans a warm-up of 1 (at most half the steps); extended to 4 steps, the
    run keeps it. The old checkpoint says warmup_steps: read as warmup, it resumes to the same weights."""
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat and the dog ran to the log\n" * 40, encoding="utf-8")
    flags = ["--task", "lm", "--data", str(text), "--context", "8", "--batch-size", "2", "--eval-batches", "2",
             "--steps", "2", "--warmup", "100", "--grad-accum", "2", "--no-interactive"]
    assert train.main(flags + ["--out", str(tmp_path / "new")]) == 0
    shutil.copytree(tmp_path / "new", tmp_path / "old")
    as_the_old_code_wrote_it(tmp_path / "old" / "last.npz")
    weights = {}
    for run in ("new", "old"):
        assert train.main(["--resume", str(tmp_path / run), "--steps", "4", "--no-interactive"]) == 0
        with np.load(tmp_path / run / "last.npz") as z:
            weights[run] = {k: z[k] for k in z.files if k.startswith("param/")}
            saved = json.loads(z["__meta__"].tobytes())["extra"]["train_config"]
        assert (saved["warmup"], saved["grad_accum"], saved["steps"]) == (1, 2, 4) and "warmup_steps" not in saved
    assert weights["new"].keys() == weights["old"].keys()
    assert all(np.array_equal(weights["new"][k], weights["old"][k]) for k in weights["new"])
