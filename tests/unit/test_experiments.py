"""Experiment runs and sweeps: overrides, run directories, the sweep summary, the CLI."""
import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from glassformer import experiments as ex
from glassformer.cli import experiments as ex_cli
from glassformer.checkpoint import load_checkpoint
from glassformer.errors import UserError

TINY_TASK = {"n_train": 64, "n_test": 16}


def tiny(name, **changes):
    """A preset shrunk to seconds: 2 steps, tiny model and data, no PNGs unless asked."""
    exp = ex.EXPERIMENTS[name]
    small = {"induction": {"n_symbols": 8, "length": 3, "min_length": 2, "max_prefix": 2}}
    exp = replace(exp, task_params={**exp.task_params, **TINY_TASK, **small.get(name, {})},
                  **{"steps": 2, "eval_every": 1, "batch_size": 8, "plots": False,
                     **changes})
    size = {"d_model": 8, "n_heads": 2}
    if exp.model != "toy":
        size.update(n_layers=1, d_ff=8)
    return replace(exp, model_params={**exp.model_params, **size})


def test_overrides_reach_run_task_and_model_fields():
    exp = ex.with_overrides(ex.EXPERIMENTS["evaluation"], ["lr=1e-3", "n_vars=2", "model.n_layers=3",
                                                       "task.n_values=7", "norm_first=false"])
    assert exp.lr == 0.001 and exp.task_params["n_vars"] == 2 and exp.task_params["n_values"] == 7
    assert exp.model_params["n_layers"] == 3 and exp.model_params["norm_first"] is False
    toy = ex.with_overrides(ex.EXPERIMENTS["induction"], ["n_layers=1"])
    assert toy.model_params["model_type"] == "attention_only_1L"
    deep = ex.with_overrides(ex.EXPERIMENTS["induction"], ["n_layers=4"])
    assert deep.model_params["n_blocks"] == 4
    with pytest.raises(UserError, match="unknown setting"):
        ex.with_overrides(ex.EXPERIMENTS["renaming"], ["colour=red"])
    with pytest.raises(UserError, match="KEY=VALUE"):
        ex.with_overrides(ex.EXPERIMENTS["renaming"], ["lr"])
    with pytest.raises(UserError, match="optimizer"):
        ex.with_overrides(ex.EXPERIMENTS["renaming"], ["optimizer=adagrad"])


def test_parse_value_and_grid():
    assert [ex.parse_value(v) for v in ("3", "1e-3", "true", "rope")] == [3, 0.001, True, "rope"]
    assert ex.parse_grid(["lr=1e-3,3e-3", "n_layers=1"]) == {"lr": ["1e-3", "3e-3"],
                                                             "n_layers": ["1"]}
    with pytest.raises(UserError):
        ex.parse_grid(["lr="])


def test_run_writes_its_directory(tmp_path):
    exp = tiny("induction", plots=True)
    exp = replace(exp, model_params={**exp.model_params, "model_type": "attention_only_1L",
                                     "n_heads": 1})
    run_dir, summary = ex.run(exp, tmp_path / "runs", log=lambda s: None, cache=tmp_path / "cache")
    assert run_dir.parent == tmp_path / "runs" and run_dir.name.endswith("-induction")
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "metrics.csv", "curves.png", "model.npz", "summary.json",
            "heads.json", "qk-circuit-0.png", "ov-circuit-0.png",
            "attention-blocks.0.attn.png", "loss.html"} <= names
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert [r["step"] for r in rows] == ["1", "2"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["experiment"]["steps"] == 2 and config["model"]["d_model"] == 8
    assert 0.0 <= summary["induction_score"] <= 1.0
    ckpt = load_checkpoint(run_dir)                         # the run folder rebuilds the model
    assert ckpt.meta["extra"]["family"] == "toy" and ckpt.experiment["steps"] == 2
    assert ckpt.model.n_parameters() > 0 and ckpt.config.d_model == 8


def test_one_loader_for_files_and_run_folders(tmp_path, capsys):
    from glassformer.cli import interp as interp_cli
    from glassformer.checkpoint import save_checkpoint
    from glassformer.models import ModelConfig, build_model
    with pytest.raises(UserError, match="no model.npz or best.npz"):
        load_checkpoint(tmp_path)
    model = build_model(ModelConfig(vocab_size=12, d_model=8, n_heads=2, n_layers=1, d_ff=8),
                        np.random.default_rng(0))
    save_checkpoint(tmp_path / "best.npz", model, step=7)   # a train_step_by_step run folder
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 7 and ckpt.experiment is None and ckpt.config == model.config
    assert interp_cli.main([str(tmp_path)]) == 2                # a classifier, not an experiments run
    assert "not a run of python -m glassformer.experiments" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["renaming", "reversal"])
def test_other_families_train_and_evaluate(name, tmp_path):
    model, data, summary = ex.train(tiny(name), None, log=lambda s: None, cache=tmp_path)
    assert set(summary) >= {"test_loss", "test_exact", "test_answer_acc"}
    assert np.isfinite(summary["test_loss"]) and 0.0 <= summary["test_exact"] <= 1.0


def test_sweep_on_a_two_by_one_grid(tmp_path):
    logs = []
    sweep_dir, rows = ex.sweep(tiny("induction"), {"lr": ["1e-3", "3e-3"], "n_layers": ["1"]},
                               tmp_path / "runs", log=logs.append, cache=tmp_path / "cache")
    assert len(rows) == 2 and [r["lr"] for r in rows] == ["1e-3", "3e-3"]
    table = list(csv.DictReader(open(sweep_dir / "summary.csv")))
    assert [r["lr"] for r in table] == ["1e-3", "3e-3"] and "test_exact" in table[0]
    assert (sweep_dir / "summary.png").read_bytes()[:4] == b"\x89PNG"
    assert len([p for p in sweep_dir.iterdir() if p.is_dir()]) == 2
    run0 = sweep_dir / table[0]["run_dir"]
    assert json.loads((run0 / "config.json").read_text())["model"]["model_type"] == \
        "attention_only_1L"
    assert (run0 / "metrics.csv").exists() and not (run0 / "curves.png").exists()   # plots=False


def test_training_reduces_the_loss(tmp_path):
    exp = replace(tiny("reversal", steps=60, eval_every=60, batch_size=32), lr=1e-2)
    exp = replace(exp, task_params={**exp.task_params, "length": 3, "n_symbols": 4})
    model, data, summary = ex.train(exp, None, log=lambda s: None, cache=tmp_path)
    assert summary["test_loss"] < 0.7 * np.log(len(data.vocab))


def test_cli(tmp_path, capsys):
    assert ex_cli.main(["--list"]) == 0
    assert "induction" in capsys.readouterr().out
    assert ex_cli.main(["nope"]) == 2
    assert "unknown experiment" in capsys.readouterr().err
    assert ex_cli.main(["induction", "colour=red"]) == 2
    assert "unknown setting" in capsys.readouterr().err
    code = ex_cli.main(["induction", "steps=1", "eval_every=1", "d_model=8", "n_heads=2", "plots=false",
                    "n_symbols=8", "length=3", "min_length=2", "max_prefix=2", "n_train=32",
                    "n_test=8", "--runs-dir", str(tmp_path / "r"),
                    "--cache", str(tmp_path / "c")])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 1


def test_curriculum_override_and_training(tmp_path):
    exp = ex.with_overrides(tiny("renaming"), ["curriculum.depth=2", "curriculum_steps=1"])
    assert exp.curriculum_params == {**ex.EXPERIMENTS["renaming"].curriculum_params, "depth": 2}
    exp = replace(exp, curriculum_params={"depth": 2, "score_queries": False})
    ex.train(exp, None, log=lambda s: None, cache=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2           # the easier dataset, then the real one


class Oracle:
    """Right exactly at the positions in `right` (B, T), wrong elsewhere."""

    training = True

    def __init__(self, targets, right, V):
        self.targets, self.right, self.V = targets, right, V

    def forward(self, inputs):
        want = np.where(self.right, self.targets, (self.targets + 1) % self.V)
        return np.eye(self.V)[np.maximum(want, 0)] * 10.0   # (B, T, V)

    def eval(self):
        return self

    def train(self, mode=True):
        return self


def test_answer_accuracy_counts_the_marked_answers():
    targets = np.array([[-1, 4, -1, 5], [-1, 2, -1, 3]])
    answers = np.array([[0, 0, 0, 1], [0, 1, 0, 1]], dtype=bool)
    data = {"inputs": np.zeros((2, 4), int), "targets": targets, "answers": answers}
    from glassformer.layers.loss import CrossEntropyLoss
    ev = ex.evaluate(Oracle(targets, answers, 8), CrossEntropyLoss(ignore_index=-1), data)
    assert ev["answer_acc"] == 1.0 and ev["token_acc"] == 0.75 and ev["exact"] == 0.5
    del data["answers"]                                     # then: each row's last target
    ev = ex.evaluate(Oracle(targets, answers, 8), CrossEntropyLoss(ignore_index=-1), data)
    assert ev["answer_acc"] == 1.0


def test_sweep_parses_before_or_after_the_name():
    a = ex_cli.parse_args(["--sweep", "lr=1e-3,3e-3", "n_layers=1,2", "induction", "steps=3"])
    b = ex_cli.parse_args(["induction", "steps=3", "--sweep", "lr=1e-3,3e-3", "n_layers=1,2"])
    for args in (a, b):
        assert args.experiment == "induction" and args.settings == ["steps=3"]
        assert args.sweep == ["lr=1e-3,3e-3", "n_layers=1,2"]


@pytest.mark.parametrize("argv", [["induction", "n_symbols=-3"], ["induction", "model.d_model=abc"],
                                  ["--sweep", "n_symbols=8,-3", "induction"],
                                  ["induction", "--sweep", "model.n_heads=2,3"]])
def test_rejected_settings_leave_no_run_directory(tmp_path, capsys, argv):
    runs = tmp_path / "runs"
    code = ex_cli.main([*argv, "steps=1", "n_train=32", "n_test=8", "--runs-dir", str(runs),
                    "--cache", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert not runs.exists() or not any(runs.iterdir())
