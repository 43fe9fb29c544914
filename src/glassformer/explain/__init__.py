"""One training step in the browser: every tensor, forward and backward, beside the code that computed it.

    python -m glassformer.explain CHECKPOINT_OR_RUN [--text "..."] [--out step.html]
    python train_step_by_step.py --task sentences --html step.html

writes one self-contained HTML file (inline CSS and JavaScript, a Content-Security-Policy that forbids
any request) showing one real training step of the model on one example: the tokens; the forward
pass stage by stage in the walk's order (record.py's Pass); the backward pass in reverse, the gradient
arriving at each layer; the optimizer's update of each parameter tensor. Each stage has its formula,
the source of the glassformer functions that computed it (read with `inspect` from the package that
ran) and the numbers.

The numbers sit in <script type="application/json" id="glassformer-step"> (island.read_island reads a
page's text back; island.decode(entry, island) turns a tensor into a NumPy array). Schema 1:

    {"schema": 1, "source": path, "text": the example's text,
     "config": the model's ModelConfig as a dict,
     "tokens": [label per input token], "ids": [input id per token],
     "targets": [target ids: one class (classifier) or the next token per position],
     "target_labels": [...], "loss": float (null if not finite),
     "optimizer": {"class", "lr", "beta1", "beta2", "eps", "weight_decay", "decoupled", "t_before"},
     "code": {qualified name: {"name", "file", "line", "lines": [source lines]}},
     "stages": [{"id": used as #id in the page's address, "title",
                 "phase": "forward" | "backward" | "update",
                 "formula": plain HTML, "note": text or null,
                 "code": [{"name": key of "code", "marks": [0-based lines that computed this stage]}],
                 "scalars": {name: number or list},
                 "axes": {tensor name: [axis names; "token" axes carry the token labels]},
                 "tensors": {name: TENSOR}}]}

    TENSOR (batch axis dropped) of up to 262,144 numbers, every tensor alike (m, v and the step too),
    is whole, in one of three forms ("norm": its float64 norm, null if not finite, in each):
        {"shape": [...], "dtype": "float32", "b64": base64 of the little-endian float32 bytes, "norm"}
    a tensor equal, number for number, to one stored before it (in stage order) names that one, so
    its numbers are stored once (a block's input, the causal mask, the gradient of the position table,
    which is the gradient arriving at the positions):
        {"shape", "dtype", "norm", "ref": [stage id, tensor name]}
    a tensor the model computed, element by element, from tensors stored before it says how, and the
    reader computes it in float32, one rounding per operation (x the first "args" tensor, y the second,
    y's shape the trailing axes of x's); it is written so only where that gives the model's numbers
    exactly (island.OPS, checked when the island is made):
        {"shape", "dtype", "norm", "op": OP, "args": [[stage id, tensor name], ...], "scale": s}
        OP "scale": s x, s a float32 number (AdamW's first m = (1 - beta1) g: the moment was 0);
           "scale_square": (s x) x (the first v = (1 - beta2) g g); "add": x + y (a residual sum,
           x + PE); "mask": x where y != 0, else float32's lowest (the masked scores); "scale" only
           with the scale ops
    larger than 262,144 numbers (GPT-2's logits, a big gradient), summarised, and the page says so:
        {"shape": [...], "dtype": "float32", "norm": float, "limit": 262144,
         "summary": {"row_norms": TENSOR (one per row, last axis kept), "block": TENSOR (top-left 64 x 64),
                     "histogram": {"edges": TENSOR (65,), "counts": [64 ints]}}}
    (the summary's own TENSORs are always the "b64" form).

Forward stage ids: tokens, embedding, positions, block-{i}-ln1 (pre-LN), -qkv, -scores, -mask,
-softmax, -heads-out, -residual-1, -ln2 (pre-LN), -fc1, -act, -fc2, -residual-2, final-norm (if any),
pooling (classifier), logits, softmax, loss. Backward: backward-loss, then backward-{layer} (dots made
dashes) in the order backward ran. Update: update-{parameter}, with "gradient g", "m (first moment)",
"v (second moment)" (after the step), "step (after - before)" and the scalars t, lr, betas, eps, the
bias corrections 1 - beta^t, the weight decay and |step| / |weight|.

Dropout is off (model.eval()), so the step is reproducible; the model and optimizer are restored after.
"""
