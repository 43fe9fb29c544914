"""What a run leaves on disk besides checkpoints: metrics.csv, summary.json, run folders. One writer each."""
import csv
import io
import json
import secrets
import os
import time
from pathlib import Path

from ..checkpoint import read_meta
from ..errors import UserError, os_error_message
from ..files import write_text
from ..inputs import read_csv_rows, read_json, stat_input

RUN_ID = "_run_id"      # config.json's key for the run's id ("_": a comment to --config); "run_id" in
                        # each checkpoint's extra. Runs made before ids existed have none and resume.


def write_metrics(path, columns, rows):
    """rows (dicts) as CSV with these columns, written atomically; None becomes an empty cell."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in columns})
    save_text(path, buf.getvalue())


def read_metrics(path, columns=None):
    """Rows of a metrics CSV as dicts of numbers (None where a cell is empty; only `columns` if given)."""
    try:                                    # bounded, a FIFO refused; every cell read must be a number
        rows = read_csv_rows(path, "metrics", numeric=columns)
    except UserError as e:
        raise UserError(f"{e}; move the metrics file away to start it afresh") from None
    return [{k: v for k, v in r.items() if columns is None or k in columns} for r in rows]


RUN_FILES = {"best.npz": "checkpoint", "last.npz": "checkpoint", "metrics.csv": "metrics", "config.json": "json",
             "summary.json": "json"}


def check_run_files(folder):
    """UserError when a run folder's own file is a FIFO, device or folder: --resume reads or replaces each."""
    for name, kind in RUN_FILES.items():
        if os.path.lexists(Path(folder) / name):
            stat_input(Path(folder) / name, kind)


def write_json(path, obj):
    """obj as indented JSON, written atomically (summary.json, run configs)."""
    save_text(path, json.dumps(obj, indent=1) + "\n")


def save_text(path, text):
    """files.write_text, a full disk (any OSError) a UserError: the old file is left as it was."""
    try:
        write_text(path, text)
    except OSError as e:
        raise UserError(f"could not write {path}: {os_error_message(e)}") from None


def new_run_dir(root, name):
    """root/<YYYYmmdd-HHMMSS>-<name>/, created, with -2, -3... when that exists already."""
    base = Path(root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    base.parent.mkdir(parents=True, exist_ok=True)
    path, k = base, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            k += 1
            path = base.with_name(f"{base.name}-{k}")


def folder_run_ids(out):
    """{file name: run id} of what a run folder says it belongs to: config.json, best.npz, last.npz."""
    out, ids = Path(out), {}
    if os.path.lexists(out / "config.json"):                # the one reader: bounded, checked, never hangs
        config = read_json(out / "config.json", "config")
        ids["config.json"] = config.get(RUN_ID) if isinstance(config, dict) else None
    for name in ("best.npz", "last.npz"):
        if not (out / name).is_file():
            continue
        try:
            meta, archive = read_meta(out / name)
            archive.close()
            ids[name] = (meta.get("extra") or {}).get("run_id")
        except (OSError, UserError):
            pass
    return {k: v for k, v in ids.items() if v is not None}


def claim_run(out, checkpoint=None, meta=None):
    """The run id of a run writing into `out`: a new one, or on resume (meta: the checkpoint's header)
    the checkpoint's; a checkpoint of another run than the folder's files is refused (UserError)
    before anything is written, so resuming it cannot replace that run's best.npz with another model."""
    if meta is None:
        return secrets.token_hex(8)
    mine = (meta.get("extra") or {}).get("run_id")
    for name, theirs in folder_run_ids(out).items():
        if Path(checkpoint).resolve() != (Path(out) / name).resolve() and theirs != mine:
            raise UserError(f"{checkpoint}: belongs to another run than the one in {out} (its {name} has "
                            f"run id {theirs}, the checkpoint {mine or 'none'}): resuming would replace "
                            "that run's files with another model; resume it into its own folder "
                            "(--out NEW_FOLDER)")
    return mine


def with_run_id(config, run_id):
    """config.json's dict with the run's id (none for a run resumed from before ids existed)."""
    return {**config, RUN_ID: run_id} if run_id else config


def best_saved(out_dir, best_val=None):
    """{"best_val_loss", "best_step"} as out_dir/best.npz's own header says (what a summary names is
    there); with no out_dir, best_val (the run kept no file)."""
    best = Path(out_dir or ".") / "best.npz"
    if not out_dir or not best.exists():
        return {"best_val_loss": None if out_dir else best_val, "best_step": None}
    meta, archive = read_meta(best)
    archive.close()
    return {"best_val_loss": meta.get("metrics", {}).get("val_loss"), "best_step": meta.get("step")}


def speed(train_s, steps, tokens, flops_per_token=None, peak_flops=None):
    """ms per update, training tokens/s and model FLOP/s over train_s seconds of updates (no evals)."""
    if not (train_s and steps):
        return {}
    rate = tokens / train_s
    out = {"train_s": round(train_s, 3), "ms_per_iter": round(1e3 * train_s / steps, 3),
           "train_tokens_per_s": round(rate, 1)}
    if flops_per_token:
        out["model_flops_per_s"] = rate * flops_per_token
        if peak_flops:
            out.update(peak_flops_per_s=peak_flops,
                       flops_ratio=float(f'{out["model_flops_per_s"] / peak_flops:.4g}'))
    return out
