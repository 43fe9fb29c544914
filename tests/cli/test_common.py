"""The pieces the commands share (cli/common.py): the epoch progress line."""
import io

from glassformer.cli import common


def test_progress_line_is_rewritten_on_a_terminal():
    out = io.StringIO()
    progress = common.Progress(out, live=True, epochs=2, n_batches=3, first_epoch=0)
    progress.begin(1)
    progress.on_batch(2, 3, 0.5)
    progress.end_epoch({"epoch": 1, "train_loss": 0.5, "train_acc": 0.8, "val_loss": 0.4,
                        "val_acc": 0.9, "seconds": 0.1}, True)
    text = out.getvalue()                                   # the one meter, rewritten; the epoch's line stays
    assert text.startswith("\repochs: ") and "\repochs: 1.0/2.0 (50%)" in text and "loss 0.5000" in text
    assert "\repoch 1/2 loss 0.5000 acc 0.800 val 0.4000 acc 0.900 " in text and "ETA" in text
