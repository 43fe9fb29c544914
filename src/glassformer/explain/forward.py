"""The forward stages of the page, in the walk's order, read from one recorded Pass.

Each stage is a dict: id, title, phase, formula (plain HTML), code (refs to the functions that
computed it), tensors ({name: array}, batch axis dropped), axes ({name: axis names}: "token" axes
get the token labels on the page) and scalars.
"""
import numpy as np

from ..backend import to_numpy
from ..layers import activations, attention, block as block_mod, heads, loss as loss_mod, norm
from ..layers.attention import attention_mask
from .code import ref

TD = ("token", "dim")
HTT = ("head", "query token", "key token")


def host(a):
    """The example's row of a recorded array, on the host, copied: (1, ...) -> (...)."""
    return np.array(to_numpy(a)[0])


def stage(sid, title, formula, code, tensors, axes=None, scalars=None, note=None, derived=None):
    """One stage dict (phase forward); axes default to (token, dim) for every 2-d tensor; derived:
    {name: (op, operands)}, how the island may store a tensor from ones stored before (island.OPS)."""
    axes = dict(axes or {})
    for name, a in tensors.items():
        axes.setdefault(name, TD if np.ndim(a) == 2 else ("dim",) * np.ndim(a))
    return {"id": sid, "title": title, "phase": "forward", "formula": formula, "code": code,
            "tensors": tensors, "axes": axes, "scalars": scalars or {}, "note": note,
            "derived": derived or {}}


def embedding_stages(model, run, T):
    """Tokens in, the embedding lookup, the positions."""
    yield stage("tokens", "Tokens in", "ids = tokenizer(text): one integer per token", [], {},
                scalars={"T (tokens)": T, "V (vocabulary)": int(model.config.vocab_size)},
                note="the tokenizer ran before the model: each token, its id (a row of the embedding) "
                     "and the target the loss will score it against")
    yield stage("embedding", "Token embedding",
                "x<sub>t</sub> = W<sub>E</sub>[id<sub>t</sub>] &nbsp; "
                "(W<sub>E</sub>: V &times; C, one row per token)",
                [ref(type(model.tok_emb).forward)], {"x = W_E[ids]": host(run["tok_emb"].out)})
    pos = model.pos
    x, out = host(run["pos"].x), host(run["pos"].out)
    if hasattr(pos, "table"):
        pe, what = np.asarray(pos.table[:T], np.float32), ("PE[t, 2i] = sin(t / 10000<sup>2i/C</sup>), "
                                                          "PE[t, 2i+1] = cos(t / 10000<sup>2i/C</sup>)")
    elif hasattr(pos, "P"):
        pe, what = np.array(to_numpy(pos.P)[:T]), "PE[t] = P[t], a learned vector per position"
    else:
        pe, what = out - x, "the positional layer's change to x"
    yield stage("positions", "Positions", f"x<sub>t</sub> = x<sub>t</sub> + PE[t]; &nbsp; {what}",
                [ref(type(pos).forward)], {"PE[:T]": pe, "x + PE": out},
                derived={"x + PE": ("add", [x, pe])})


def norm_stage(run, name, sid, title):
    """One LayerNorm (or RMSNorm) as its own stage."""
    call = run[name]
    code = [ref(type_of(run, name).forward)]
    if "LayerNorm" in code[0]["name"]:
        code.append(ref(norm.layer_norm_forward))
    return stage(sid, title, "LN(x) = (x &minus; mean(x)) / &radic;(var(x) + &epsilon;) "
                 "&middot; &gamma; + &beta;"
                 " &nbsp; (per token, over the C features)", code,
                 {"input x": host(call.x), "LN(x)": host(call.out)})


def type_of(run, name):
    """The class of the layer the recorded call `name` belongs to."""
    return run.layers[name].__class__


def attention_stages(model, run, i, v):
    """q/k/v, scores, mask, softmax (one map per head), the heads' output."""
    p, attn = f"blocks.{i}", model.blocks[i].attn
    q, k, vv = (np.array(to_numpy(a)[0]) for a in (attn.q, attn.k, attn.v))   # (H, T, D)
    H, T, D = q.shape
    yield stage(f"block-{i}-qkv", f"Block {i}: q, k, v",
                "q = x W<sub>Q</sub>, k = x W<sub>K</sub>, v = x W<sub>V</sub>, "
                "split into H heads of D = C / H",
                [ref(type(attn).project_qkv)], {"q": q, "k": k, "v": vv},
                axes={n: ("head", "token", "d") for n in "qkv"}, scalars={"H": H, "D": D})
    scores = (q @ k.transpose(0, 2, 1)) * np.float32(D ** -0.5)          # as attend() computes them
    yield stage(f"block-{i}-scores", f"Block {i}: attention scores",
                "scores = q k<sup>T</sup> / &radic;D &nbsp; (row: a query token; column: a key token)",
                [ref(attention.attend, "scores")], {"scores": scores}, axes={"scores": HTT})
    allowed = attention_mask(np, T, T, attn.causal)
    allowed = np.ones((T, T), bool) if allowed is None else allowed[0, 0]
    masked = np.where(allowed, scores, np.finfo(scores.dtype).min)   # as attend() masks them
    yield stage(f"block-{i}-mask", f"Block {i}: mask",
                ("causal: a query sees only itself and earlier keys; the others get float32's lowest "
                 "number, so exp gives 0" if attn.causal else "no mask: every token sees every token"),
                [ref(attention.attention_mask), ref(attention.attend, "xp.where")],
                {"allowed (1 = may attend)": allowed.astype(np.float32), "scores + mask": masked},
                axes={"allowed (1 = may attend)": ("query token", "key token"), "scores + mask": HTT},
                derived={"scores + mask": ("mask", [scores, allowed.astype(np.float32)])})
    yield stage(f"block-{i}-softmax", f"Block {i}: softmax, each head's attention map",
                "a<sub>ts</sub> = exp(s<sub>ts</sub>) / &Sigma;<sub>s'</sub> exp(s<sub>ts'</sub>) &nbsp; "
                "(each row sums to 1)",
                [ref(activations.softmax), ref(attention.attend, "softmax")],
                {"attention weights": np.array(to_numpy(attn.att)[0])}, axes={"attention weights": HTT})
    proj = run[f"{p}.attn.proj"]
    yield stage(f"block-{i}-heads-out", f"Block {i}: heads' output",
                "y<sub>h</sub> = a<sub>h</sub> v<sub>h</sub>; &nbsp; out = concat(y<sub>1</sub> &hellip; "
                "y<sub>H</sub>) W<sub>O</sub>",
                [ref(type(attn).forward, "attend(", "merge_heads", "proj")],
                {"concat(heads)": host(proj.x), "attention output": host(proj.out)})


def residual_stage(i, k, r, x, normed, what, ln, terms):
    """The residual sum after a sub-layer (and, post-LN, the norm that follows it); terms: (the
    stream in, the sub-layer's output), whose sum r is."""
    tensors = {f"r = x + {what}(x)": host(r)}
    if normed:
        tensors[f"{ln}(r)"] = host(x)
    formula = (f"r = x + {what}(x); &nbsp; x = {ln}(r) &nbsp; (post-LN)" if normed else
               f"x = x + {what}(x) &nbsp; (pre-LN: the residual stream is not normalised here)")
    return stage(f"block-{i}-residual-{k}", f"Block {i}: residual after the {what}", formula,
                 [ref(block_mod.TransformerBlock.forward, "x +" if not normed else "ln")], tensors,
                 derived={f"r = x + {what}(x)": ("add", [host(t) for t in terms])})


def ffn_stages(model, run, i, v):
    """fc1, the activation, fc2."""
    ffn = model.blocks[i].ffn
    act = type(ffn.act)
    yield stage(f"block-{i}-fc1", f"Block {i}: FFN, first layer", "h = x W<sub>1</sub> + b<sub>1</sub>",
                [ref(type(ffn).forward), ref(type(ffn.fc1).forward)],
                {"h": host(v["fc1"])}, note="its input x is the stream the stage before left")
    code = [ref(act.forward)] + ([ref(activations.gelu_forward)] if act.__name__ == "GELU" else [])
    formula = ("GELU(h) = &frac12; h (1 + tanh(&radic;(2/&pi;) (h + 0.044715 h<sup>3</sup>)))"
               if act.__name__ == "GELU" else f"{act.__name__}(h), element by element")
    yield stage(f"block-{i}-act", f"Block {i}: {act.__name__}", formula, code,
                {f"{act.__name__}(h)": host(v["hidden"])})
    yield stage(f"block-{i}-fc2", f"Block {i}: FFN, second layer", "f = g W<sub>2</sub> + b<sub>2</sub>",
                [ref(type(ffn.fc2).forward)], {"FFN output f": host(v["fc2"])})


def block_stages(model, run, i):
    """Every stage of block i, in the order the block ran (pre-LN or post-LN)."""
    v, p = run.block(i), f"blocks.{i}"
    if v["pre"]:
        yield norm_stage(run, p + ".ln1", f"block-{i}-ln1", f"Block {i}: LayerNorm before attention")
    yield from attention_stages(model, run, i, v)
    yield residual_stage(i, 1, v["r1"], v["x1"], v["normed1"], "attention", "ln1", (run[p].x, v["attn"]))
    if v["pre"]:
        yield norm_stage(run, p + ".ln2", f"block-{i}-ln2", f"Block {i}: LayerNorm before the FFN")
    yield from ffn_stages(model, run, i, v)
    yield residual_stage(i, 2, v["r2"], v["x2"], v["normed2"], "FFN", "ln2", (v["x1"], v["fc2"]))


def head_stages(model, run, logits, targets, loss, per_token):
    """The final norm, pooling (a classifier), the logits, softmax and the loss."""
    lm = model.config.kind == "decoder_lm"
    if "ln_f" in run:
        yield norm_stage(run, "ln_f", "final-norm", "Final LayerNorm")
    if not lm:
        yield stage("pooling", "Pooling", f"pooled = {model.config.pooling} token vector(s) of x",
                    [ref(heads.Pooling.forward)], {"pooled": host(run["pool"].out)[None]},
                    axes={"pooled": ("row", "dim")})
    z = host(logits) if lm else host(logits)[None]          # (T, V) or (1, n_classes)
    zaxes = ("token", "vocabulary id") if lm else ("row", "class")
    head = run.layers["head"]
    yield stage("logits", "Logits", "z = h W<sub>E</sub><sup>T</sup> (tied)" if getattr(
        model.config, "tie_weights", False) and lm else "z = h W + b",
        [ref(type(head).forward)], {"logits z": z}, axes={"logits z": zaxes})
    probs = np.exp(z - z.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    yield stage("softmax", "Softmax", "p<sub>i</sub> = exp(z<sub>i</sub> &minus; max z) / &Sigma;<sub>j</sub>"
                " exp(z<sub>j</sub> &minus; max z)", [ref(activations.softmax)], {"p = softmax(z)": probs},
                axes={"p = softmax(z)": zaxes})
    yield stage("loss", "Loss", "loss = &minus;(1/N) &Sigma;<sub>t</sub> "
                "log p<sub>t</sub>[target<sub>t</sub>]"
                " &nbsp; (cross-entropy)", [ref(loss_mod.cross_entropy_forward)],
                {"-log p[target]": per_token[None]}, axes={"-log p[target]": ("row", "token")},
                scalars={"loss": loss, "targets": [int(t) for t in np.ravel(to_numpy(targets))]})


def forward_stages(model, run, logits, targets, loss, per_token):
    """Every forward stage, in the walk's order."""
    T = int(run["tok_emb"].out.shape[1])
    yield from embedding_stages(model, run, T)
    for i in range(len(model.blocks)):
        yield from block_stages(model, run, i)
    yield from head_stages(model, run, logits, targets, loss, per_token)
