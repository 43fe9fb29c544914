"""Experiment runs and sweeps on the synthetic tasks, each in its own run directory.

    python -m glassformer.experiments --list
    python -m glassformer.experiments induction steps=600 lr=3e-3
    python -m glassformer.experiments renaming --sweep lr=1e-3,3e-3 n_layers=2,4

A run writes runs/<time>-<name>/: config.json, metrics.csv, curves.png, model.npz (a checkpoint),
summary.json and, for models with self-attention, heads.json and attention-*.png (toy models also
qk-/ov-circuit PNGs). A sweep runs the grid one run after another inside runs/<time>-<name>-sweep/
and writes summary.csv and summary.png there.
"""
import itertools
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from . import interp
from .checkpoint import FAMILIES, save_checkpoint
from .domains import SEED, Domain
from .errors import UserError, parse_value, typed_setting  # noqa: F401  (parse_value: tests)
from .layers.loss import CrossEntropyLoss
from .models import ModelConfig, build_model
from .optim.optimizers import SGD, AdamW
from .optim.optimizers import warmup_cosine
from .research import EncoderDecoder, EncoderDecoderConfig, Muon, ToyConfig, build_toy_model
from .tasks import BOS, EOS, IGNORE, PAD, load_dataset, make_task, task_class
from .train import new_run_dir, read_metrics, train_step, write_json, write_metrics
from .visualization import (OV_AXES, Panel, loss_html, plot_circuit, plot_curves, plot_sweep,
                            save_attention_heatmaps)

OPTIMIZERS = ("adamw", "muon", "sgd")
EXAMPLE = "python -m glassformer.experiments induction steps=600 lr=3e-3"
METRIC_COLUMNS = ("step", "lr", "train_loss", "test_loss", "test_token_acc", "test_exact",
                  "test_answer_acc", "seconds")
CURVE_PANELS = (Panel("loss", "cross-entropy loss", (("train_loss", "train"), ("test_loss", "test"))),
                Panel("accuracy", "accuracy", (("test_token_acc", "test token acc"),
                                               ("test_exact", "test exact match")), True))


SETTING = Domain(float, -1e9, 1e9)                          # a task.KEY or model.KEY number; run fields:
STEPS, EVERY, LR = Domain(int, 1, 10**9), Domain(int, 0, 10**9), Domain(float, 1e-12, 10.0)   # RUN_DOMAINS
RUN_DOMAINS = {"curriculum_steps": EVERY, "lr": LR, "adamw_lr": LR, "steps": STEPS, "warmup": EVERY,
               "weight_decay": Domain(float, 0.0, 10.0), "batch_size": Domain(int, 1, 2**20), "seed": SEED,
               "min_lr_ratio": Domain(float, 0.0, 1.0), "grad_clip": Domain(float, 0.0, 1e6), "eval_every": STEPS}


@dataclass
class Experiment:
    """Everything a run needs; task_params and model_params go to the task and model configs."""
    name: str
    task: str
    model: str = "toy"                 # "toy" (ToyConfig), "decoder_lm" (ModelConfig), "encoder_decoder"
    task_params: dict = field(default_factory=dict)
    model_params: dict = field(default_factory=dict)
    curriculum_params: dict = field(default_factory=dict)   # task changes for the first steps
    curriculum_steps: int = 0          # e.g. shorter chains first (see the renaming preset)
    optimizer: str = "adamw"
    lr: float = 3e-3                   # peak; Muon: the Muon rate (AdamW part: adamw_lr)
    adamw_lr: float = 3e-3             # Muon only: the rate of its AdamW half (embeddings, gains)
    weight_decay: float = 0.0
    batch_size: int = 64
    steps: int = 1000
    warmup: int = 50
    min_lr_ratio: float = 0.1          # cosine decays to lr * min_lr_ratio
    grad_clip: float = 1.0
    eval_every: int = 250
    seed: int = 0
    plots: bool = True                 # PNGs per run: curves, attention maps, circuits

    def __post_init__(self):
        if self.model not in FAMILIES:
            raise UserError(f"model={self.model!r}: use one of {sorted(FAMILIES)}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer={self.optimizer!r}: use one of {OPTIMIZERS}")
        for name, domain in RUN_DOMAINS.items():
            domain.check(getattr(self, name), name)         # DomainError: one line, what to give


EXPERIMENTS = {
    "induction": Experiment(
        "induction", "induction", "toy",
        {"n_symbols": 64, "length": 12, "n_train": 20000, "n_test": 500},
        {"model_type": "attention_only_2L", "d_model": 64, "n_heads": 4, "positional": "rope"},
        steps=2000),
    # Renaming plateaus at "some digit seen so far" unless: one-hop lookups first (the curriculum),
    # lr warmed up over them (a fast start sticks there), and enough attention-only blocks.
    "renaming": Experiment(
        "renaming", "renaming", "toy",
        {"depth": 3, "n_chains": 3, "n_train": 50000, "n_test": 1000},
        {"model_type": "attention_only_2L", "n_blocks": 6, "d_model": 64, "n_heads": 4,
         "positional": "rope"},
        curriculum_params={"depth": 2, "score_queries": False}, curriculum_steps=800,
        lr=1e-3, warmup=800, steps=5000, eval_every=500),
    "evaluation": Experiment(
        "evaluation", "evaluation", "decoder_lm", {"n_vars": 3},
        {"d_model": 64, "n_heads": 4, "n_layers": 4, "d_ff": 128}, lr=1e-3, warmup=500, steps=3000),
    "dag": Experiment(
        "dag", "dag", "decoder_lm", {"mode": "reach", "n_nodes": 6, "n_edges": 6},
        {"d_model": 64, "n_heads": 4, "n_layers": 4, "d_ff": 128}, lr=1e-3, warmup=500, steps=3000),
    "dag_order": Experiment(
        "dag_order", "dag", "decoder_lm", {"mode": "order", "n_nodes": 5},
        {"d_model": 64, "n_heads": 4, "n_layers": 4, "d_ff": 128}, lr=1e-3, warmup=500, steps=3000),
    "reversal": Experiment(
        "reversal", "sequence", "encoder_decoder",
        {"mode": "reverse", "length": 8, "n_symbols": 10, "n_train": 20000, "n_test": 1000},
        {"d_model": 32, "n_heads": 4, "n_layers": 1, "d_ff": 64, "norm_first": True}, steps=800),
    "sorting": Experiment(
        "sorting", "sequence", "encoder_decoder",
        {"mode": "sort", "length": 8, "n_symbols": 10, "n_train": 20000, "n_test": 1000},
        {"d_model": 32, "n_heads": 4, "n_layers": 1, "d_ff": 64, "norm_first": True}, steps=800),
    "charlm": Experiment(
        "charlm", "charlm", "toy", {"seq_len": 64},
        {"model_type": "transformer_2L", "d_model": 64, "n_heads": 4}, steps=1000),
}


# ---- overrides: key=value strings ----------------------------------------------------------------

def setting_value(key, text, cls, kind=None):
    """KEY=TEXT typed as cls's field (errors.typed_setting); a number also within +-1e9 (SETTING)."""
    value = typed_setting(key, text, cls, kind)
    return value if isinstance(value, (bool, str)) else type(value)(SETTING.check(value, key))


def apply_override(exp, key, text):
    """A new Experiment with one key set from its text, typed as its field (errors.typed_setting): an
    Experiment field, task.KEY, model.KEY, or a bare KEY found in exactly one of the task and model
    configs (n_layers on a toy model sets model_type)."""
    run_keys = {f.name for f in fields(Experiment)} - {"task_params", "model_params",
                                                       "curriculum_params"}
    scope, _, bare = key.rpartition(".")
    if not scope and key in run_keys:
        return replace(exp, **{key: RUN_DOMAINS[key].read(text, key) if key in RUN_DOMAINS else
                               typed_setting(key, text, Experiment)})
    task_config, model_config = task_class(exp.task).config_class, FAMILIES[exp.model][0]
    model_keys = {f.name for f in fields(model_config)} - {"vocab_size"} | \
        ({"n_layers"} if exp.model == "toy" else set())
    in_task, in_model = bare in {f.name for f in fields(task_config)}, bare in model_keys
    if scope == "curriculum" and in_task:
        value = setting_value(key, text, task_config)
        return replace(exp, curriculum_params={**exp.curriculum_params, bare: value})
    if scope not in ("", "task", "model") or (scope == "task" and not in_task) or \
            (scope == "model" and not in_model) or not (in_task or in_model):
        raise UserError(f"unknown setting {key!r} for experiment {exp.name!r} (task {exp.task}, "
                        f"model {exp.model}): use a run field {sorted(run_keys)}, task.KEY, model.KEY or "
                        "curriculum.KEY")
    if not scope and in_task and in_model:
        raise UserError(f"{key!r} is both a task and a model setting: write task.{key} or model.{key}")
    if scope == "task" or (not scope and in_task):
        return replace(exp, task_params={**exp.task_params, bare: setting_value(key, text, task_config)})
    value = setting_value(key, text, model_config, int if bare == "n_layers" else None)
    if exp.model == "toy" and bare == "n_layers":              # model_type's 1L / 2L, or n_blocks
        kind = exp.model_params.get("model_type", "attention_only_1L").rsplit("_", 1)[0]
        if value in (1, 2):
            return replace(exp, model_params={**exp.model_params, "model_type": f"{kind}_{value}L",
                                              "n_blocks": 0})
        bare = "n_blocks"
    return replace(exp, model_params={**exp.model_params, bare: value})


def split_assignment(text):
    if "=" not in text:
        raise UserError(f"{text!r}: write settings as KEY=VALUE, e.g. lr=1e-3")
    key, _, value = text.partition("=")
    return key.strip(), value.strip()


def with_overrides(exp, assignments):
    """Apply "key=value" strings in order."""
    for text in assignments:
        key, value = split_assignment(text)
        exp = apply_override(exp, key, value)
    return exp


# ---- building the pieces -------------------------------------------------------------------------

def build(exp, dataset):
    """The model for an experiment, sized to the dataset's vocabulary and sequence lengths."""
    rng = np.random.default_rng(exp.seed)
    V, params = len(dataset.vocab), dict(exp.model_params)
    try:
        if exp.model == "encoder_decoder":
            longest = max(dataset.train["src"].shape[1], dataset.train["tgt_in"].shape[1]) + 1
            params.setdefault("max_len", longest)
            return EncoderDecoder(EncoderDecoderConfig(vocab_size=V, **params), rng)
        T = dataset.train["inputs"].shape[1]
        if exp.model == "toy":
            params.setdefault("n_ctx", T)
            return build_toy_model(ToyConfig(vocab_size=V, **params), rng)
        defaults = dict(kind="decoder_lm", max_len=T, norm_first=True, activation="relu",
                        positional="learned", tie_weights=False, init="normal")
        return build_model(ModelConfig(vocab_size=V, **{**defaults, **params}), rng)
    except TypeError as e:
        raise UserError(f"model settings for {exp.model}: {e}") from None


def make_optimizer(exp, model):
    if exp.optimizer == "muon":
        return Muon(model.named_parameters(), lr=exp.lr, adamw_lr=exp.adamw_lr,
                    adamw_weight_decay=exp.weight_decay)
    if exp.optimizer == "sgd":
        return SGD(model.get_parameters(), lr=exp.lr, momentum=0.9, weight_decay=exp.weight_decay)
    return AdamW(model.get_parameters(), lr=exp.lr, weight_decay=exp.weight_decay)


def model_inputs(batch):
    """The positional arguments of model.forward for a batch of either kind."""
    return (batch["src"], batch["tgt_in"]) if "src" in batch else (batch["inputs"],)


def targets_of(batch):
    return batch["tgt_out"] if "tgt_out" in batch else batch["targets"]


def evaluate(model, loss_fn, data, batch_size=500):
    """{"loss", "token_acc", "exact", "answer_acc"} over the scored targets.

    exact: every scored target of a row right (seq2seq: by greedy decoding, no teacher forcing);
    answer_acc: the answers the task marks (renaming's queries) right, else each row's last target.
    """
    model.eval()
    n = len(targets_of(data))
    total, tokens, correct, exact, answer, n_answers = 0.0, 0, 0, 0, 0, 0
    for i in range(0, n, batch_size):
        batch = {k: v[i:i + batch_size] for k, v in data.items()}
        y = targets_of(batch)
        logits = model.forward(*model_inputs(batch))        # (B, T, V)
        scored = y != IGNORE
        n_scored = int(scored.sum())
        total += float(loss_fn.forward(logits, y)) * n_scored
        hit = (np.asarray(logits).argmax(axis=-1) == y) | ~scored
        tokens += n_scored
        if "answers" in batch:
            answer += int((hit & batch["answers"]).sum())
            n_answers += int(batch["answers"].sum())
        else:
            last = scored.shape[1] - 1 - scored[:, ::-1].argmax(axis=1)      # (B,)
            answer += int(hit[np.arange(len(y)), last].sum())
            n_answers += len(y)
        correct += int((hit & scored).sum())
        if "src" in batch:                                  # free-running, no teacher forcing
            out = np.asarray(model.greedy_decode(batch["src"], BOS, EOS, y.shape[1]))  # (B, <= T)
            out = np.pad(out, ((0, 0), (0, y.shape[1] - out.shape[1])), constant_values=EOS)
            exact += int((out == y).all(axis=1).sum())      # the target and its <eos>
        else:
            exact += int(hit.all(axis=1).sum())
    model.train()
    return {"loss": total / max(tokens, 1), "token_acc": correct / max(tokens, 1),
            "exact": exact / max(n, 1), "answer_acc": answer / max(n_answers, 1)}


# ---- a run ---------------------------------------------------------------------------------------

def prepare(exp, cache=None):
    """(task, dataset, curriculum dataset, model): what a run builds first, so bad settings fail early."""
    task = make_task(exp.task, **exp.task_params)
    dataset = load_dataset(task, cache=cache)
    first = dataset if not exp.curriculum_steps else load_dataset(   # an easier variant first
        make_task(exp.task, **{**exp.task_params, **exp.curriculum_params}), cache=cache)
    return task, dataset, first, build(exp, dataset)


def train(exp, run_dir=None, log=print, cache=None, prepared=None):
    """Train one experiment; returns (model, dataset, summary dict). run_dir=None writes nothing."""
    task, dataset, first, model = prepared or prepare(exp, cache)
    optimizer = make_optimizer(exp, model)
    loss_fn = CrossEntropyLoss(ignore_index=IGNORE)
    rng = np.random.default_rng(exp.seed + 1)
    run_dir = Path(run_dir) if run_dir else None
    if run_dir:
        write_json(run_dir / "config.json", {"experiment": asdict(exp), "model": model.config.to_dict(),
                                             "dataset": {"key": dataset.key, **task.identity()}})
    rows, losses, start = [], [], time.time()
    for step in range(1, exp.steps + 1):
        optimizer.lr = warmup_cosine(step - 1, exp.lr, exp.warmup, exp.steps, exp.lr * exp.min_lr_ratio)
        train_set = (first if step <= exp.curriculum_steps else dataset).train
        idx = rng.integers(0, len(targets_of(train_set)), exp.batch_size)
        batch = {k: v[idx] for k, v in train_set.items()}
        loss, _, _ = train_step(model, loss_fn, optimizer, [(model_inputs(batch), targets_of(batch))],
                                grad_clip=exp.grad_clip)
        losses.append(float(loss))
        if step % exp.eval_every == 0 or step == exp.steps:
            ev = evaluate(model, loss_fn, dataset.test)
            rows.append({"step": step, "lr": optimizer.lr, "train_loss": float(np.mean(losses)),
                         **{f"test_{k}": v for k, v in ev.items()},
                         "seconds": round(time.time() - start, 2)})
            losses = []
            if run_dir:
                write_metrics(run_dir / "metrics.csv", METRIC_COLUMNS, rows)
            log(f"{exp.name} step {step}/{exp.steps}: train loss {rows[-1]['train_loss']:.4f}, test "
                f"loss {ev['loss']:.4f}, token acc {ev['token_acc']:.4f}, exact {ev['exact']:.4f}, "
                f"answer {ev['answer_acc']:.4f} ({rows[-1]['seconds']:.0f}s)")
    summary = {"name": exp.name, "steps": exp.steps, "seconds": round(time.time() - start, 2),
               **{k: rows[-1][k] for k in METRIC_COLUMNS if k.startswith("test_")},
               "n_test": len(targets_of(dataset.test))}
    summary.update(analyze(model, dataset, run_dir, plots=exp.plots))
    if run_dir:
        if exp.plots:
            plot_curves(rows, run_dir / "curves.png", x="step", panels=CURVE_PANELS, title=exp.name)
        save_checkpoint(run_dir / "model.npz", model, task=task.identity(), optimizer=optimizer,
                        step=exp.steps, rng=rng, metrics=summary,
                        extra={"family": exp.model, "experiment": asdict(exp)})
        write_json(run_dir / "summary.json", summary)
    return model, dataset, summary


def analyze(model, dataset, run_dir=None, n_examples=200, plots=True):
    """Head classification on held-out data; with a run_dir, heads.json (and attention and circuit
    PNGs when plots)."""
    task, test = dataset.task, dataset.test
    batch = {k: v[:n_examples] for k, v in test.items()}
    maps = interp.attention_maps(model, *model_inputs(batch))
    if not maps:
        return {}
    out = {}
    self_maps = {n: a for n, a in maps.items() if a.shape[-1] == a.shape[-2] and "cross" not in n}
    ids, period = batch.get("inputs"), batch.get("period")
    heads = interp.classify_heads(self_maps, ids, period=period, prefix=batch.get("offset", 1),
                                  mask=None if ids is None else ids != PAD)
    best = max(heads, key=lambda r: r["induction"], default=None)
    if period is not None and best is not None:
        found = [r for r in heads if r["label"] == "induction"]
        out["induction_score"] = best["induction"]
        out["induction_head"] = f"{best['layer']} head {best['head']}"
        out["induction_heads_found"] = [f"{r['layer']} head {r['head']}" for r in found]
    if run_dir:
        run_dir = Path(run_dir)
        write_json(run_dir / "heads.json", heads)
    if run_dir and plots:
        src = batch.get("src")
        tokens = [task.vocab[i] for i in (batch["tgt_in"] if src is not None else ids)[0]]
        src_tokens = [task.vocab[i] for i in src[0]] if src is not None else None
        save_attention_heatmaps(maps, tokens, run_dir, src_tokens=src_tokens)
        if ids is not None:                                 # decoder: which tokens were hard
            real = ids[0][:max(1, int((ids[0] != PAD).sum()))]
            loss_html([task.vocab[i] for i in real], interp.per_token_loss(model, real),
                      run_dir / "loss.html", title=f"per-token loss: {task.name}",
                      sep="" if task.name == "charlm" else " ", vocab_size=len(task.vocab))
        if hasattr(model, "blocks") and hasattr(model.blocks[0].attn, "head_weights"):
            for i in range(len(model.blocks)):
                plot_circuit(interp.qk_circuit(model, i), task.vocab, run_dir / f"qk-circuit-{i}.png",
                             f"QK circuit, layer {i}")
                plot_circuit(interp.ov_circuit(model, i), task.vocab, run_dir / f"ov-circuit-{i}.png",
                             f"OV circuit, layer {i}", axes=OV_AXES)
    return out


def run(exp, root="runs", log=print, cache=None):
    """One run in a new run directory (made once the settings are known to work); (run_dir, summary)."""
    prepared = prepare(exp, cache)
    run_dir = new_run_dir(root, exp.name)
    log(f"run directory: {run_dir}")
    _, _, summary = train(exp, run_dir, log, cache, prepared)
    return run_dir, summary


# ---- sweeps --------------------------------------------------------------------------------------

def parse_grid(specs):
    """["lr=1e-3,3e-3", "n_layers=1,2"] -> {"lr": ["1e-3", "3e-3"], "n_layers": ["1", "2"]}."""
    grid = {}
    for text in specs:
        key, values = split_assignment(text)
        grid[key] = [v.strip() for v in values.split(",") if v.strip()]
        if not grid[key]:
            raise UserError(f"{text!r}: give at least one value, e.g. {key}=1,2")
    return grid


def sweep(exp, grid, root="runs", log=print, cache=None):
    """Run every combination of the grid in turn; writes summary.csv and summary.png; returns rows."""
    combos = list(itertools.product(*grid.values()))
    variants = [with_overrides(exp, [f"{k}={v}" for k, v in zip(grid, values)]) for values in combos]
    for variant in variants:                                # every setting checked before any folder
        prepare(variant, cache)
    sweep_dir = new_run_dir(root, f"{exp.name}-sweep")
    log(f"sweep of {len(combos)} runs: {sweep_dir}")
    rows, curves, bars = [], [], []
    for values, variant in zip(combos, variants):
        label = ",".join(f"{k}={v}" for k, v in zip(grid, values))
        run_dir = sweep_dir / label.replace(",", "-").replace("/", "_")
        run_dir.mkdir()
        _, _, summary = train(replace(variant, name=f"{exp.name}[{label}]"), run_dir, log, cache)
        rows.append({**dict(zip(grid, values)), **{k: v for k, v in summary.items()
                                                   if not isinstance(v, list)},
                     "run_dir": run_dir.name})
        metrics = read_metrics(run_dir / "metrics.csv")
        curves.append((label, [(r["step"], r["test_loss"]) for r in metrics]))
        bars.append((label, summary["test_exact"]))
    columns = list(grid) + [k for k in rows[0] if k not in grid]
    write_metrics(sweep_dir / "summary.csv", columns, rows)
    plot_sweep(curves, bars, sweep_dir / "summary.png", exp.name)
    log(f"summary: {sweep_dir / 'summary.csv'}, {sweep_dir / 'summary.png'}")
    return sweep_dir, rows


if __name__ == "__main__":             # python -m glassformer.experiments: the command is in cli/
    from .cli.experiments import main
    raise SystemExit(main())
