"""What a resumed LM run must agree with: the saved trainer state's types, and the run's schedule;
and share_rng, which lets one saved Generator cover every dropout mask.

The warm-up + cosine is a property of the run (planned for its total steps, saved in every
checkpoint): a resume keeps it, unless the caller extends the run, which re-plans the cosine only.
"""
from dataclasses import replace

from ..checkpoint import FLOAT, NAT, check_schema
from ..errors import UserError
from ..layers.dropout import Dropout
from .config import current_names, schedule_names

SCHEDULE = schedule_names()                                 # steps, warmup, lr, min_lr
TRAINER_STATE = {"best_val?": (FLOAT, None), "tokens_seen?": NAT, "elapsed?": FLOAT, "train_s?": FLOAT,
                 "loss_scaler?": ({"scale": FLOAT, "good_steps?": NAT, "skipped_steps?": NAT}, None)}


def saved_state(where, ckpt):
    """The checkpoint's extra dict, its "trainer" and "train_config" entries checked (UserError if bad)."""
    return check_schema(where, ckpt.meta.get("extra", {}), {"trainer?": TRAINER_STATE, "train_config?": dict,
                                                            "run_id?": (str, None)}, "header extra")


def keep_schedule(config, saved, extend=False):
    """(config with the saved run's schedule, a note or None); a different schedule is a UserError
    unless extend, which keeps the warm-up and rates and moves only the end of the cosine. `saved` is
    a checkpoint's train_config, old names (warmup_steps) read as the current ones."""
    saved = current_names(saved)
    plan = {k: saved[k] for k in SCHEDULE if k in saved}
    changed = {k: v for k, v in plan.items() if getattr(config, k) != v}
    if not changed:
        return config, None
    if not extend:
        was = ", ".join(f"{k}={v}" for k, v in changed.items())
        now = ", ".join(f"{k}={getattr(config, k)}" for k in changed)
        raise UserError(f"the resumed run planned its learning-rate schedule with {was}, not {now}: "
                        "changing it would change the rate of steps already planned. Resume with the "
                        "run's settings, or extend the run to re-plan the cosine to a new total "
                        "(Trainer.resume(extend=True); on the command line --resume with --steps N)")
    kept = replace(config, **{k: v for k, v in plan.items() if k != "steps"})
    return kept, schedule_note(plan.get("steps"), kept.steps)


def schedule_note(planned, steps):
    """What resuming with `steps` instead of the `planned` total does to the run, or None if nothing."""
    if planned is None or steps == planned:
        return None
    how = "extending" if steps > planned else "shortening"
    return (f"{how} the run: its cosine now ends at step {steps} instead of {planned}"
            + ("" if steps > planned else ", so the learning rate falls faster from here")
            + "; warm-up and learning rates as planned")


def share_rng(model, rng):
    """Point every Dropout layer at rng, so one saved generator state covers all the randomness."""
    stack = [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, Dropout):
            layer.rng = rng
        stack.extend(layer.children().values())
