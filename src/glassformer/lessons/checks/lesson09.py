"""Lesson 9: optimizers, clipping, schedules."""
import numpy as np

from ...optim import SGD, AdamW
from ...optim.optimizers import warmup_cosine as reference_schedule
from ..grading import close, exercise, randn, unpack


@exercise("09")
def sgd_momentum_step(fn, rng):
    p, vel = randn(rng, 5), np.zeros(5)
    ref_p, ref_g = p.copy(), np.zeros(5)
    opt = SGD([(ref_p, ref_g)], lr=0.1, momentum=0.9)
    for step in range(4):
        g = randn(rng, 5)
        ref_g[...] = g
        opt.step()
        p, vel = unpack(fn(p.copy(), g.copy(), vel.copy(), 0.1, 0.9), ("p", "velocity"))
        close(p, ref_p, f"p after step {step + 1}")


NO_BIAS_CORRECTION = ("this is the step without bias correction: divide m by (1 - b1^t) and v by (1 - b2^t) "
                      "before the update, since both start at 0")


def adamw_without_bias_correction(p, g, m, v, lr, betas, eps, wd):
    """The slip's new p: the moments right, the update with m / (sqrt(v) + eps)."""
    m, v = betas[0] * m + (1 - betas[0]) * g, betas[1] * v + (1 - betas[1]) * g * g
    return p * (1 - lr * wd) - lr * m / (np.sqrt(v) + eps)


@exercise("09")
def adamw_step(fn, rng):
    for wd in (0.0, 0.1):
        p, m, v = randn(rng, 6), np.zeros(6), np.zeros(6)
        ref_p, ref_g = p.copy(), np.zeros(6)
        opt = AdamW([(ref_p, ref_g)], lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd)
        for t in range(1, 6):
            g = randn(rng, 6) * 10.0 ** rng.integers(-3, 2, 6)     # gradients of every size
            ref_g[...] = g
            opt.step()
            slip = adamw_without_bias_correction(p, g, m, v, 0.01, (0.9, 0.99), 1e-8, wd)
            p, m, v = unpack(fn(p.copy(), g.copy(), m.copy(), v.copy(), t, 0.01, (0.9, 0.99), 1e-8, wd),
                             ("p", "m", "v"))
            close(p, ref_p, f"p after step {t} (weight_decay={wd})", rtol=1e-7, atol=1e-10,
                  hints=[(slip, NO_BIAS_CORRECTION)])


@exercise("09")
def clip_grad_norm(fn, rng):
    g1, g2 = np.array([3.0, 4.0]), np.array([12.0])
    clipped, norm = unpack(fn([g1.copy(), g2.copy()], 1.0), ("clipped", "norm"))
    close(norm, 13.0, "the norm before clipping of [3, 4] and [12]")
    close(np.concatenate([np.ravel(c) for c in clipped]), np.array([3.0, 4.0, 12.0]) / 13,
          "the clipped gradients (same direction, norm 1)")
    small = [np.array([0.3, 0.4])]
    clipped, norm = unpack(fn([small[0].copy()], 1.0), ("clipped", "norm"))
    close(clipped[0], small[0], "a gradient already below max_norm (must be left alone)")
    big = [randn(rng, 3, 4), randn(rng, 5)]
    clipped, norm = unpack(fn([b.copy() for b in big], 0.5), ("clipped", "norm"))
    total = np.sqrt(sum((c ** 2).sum() for c in clipped))
    close(total, 0.5, "the global norm after clipping to 0.5", rtol=1e-5)


@exercise("09")
def warmup_cosine(fn, rng):
    for args in ((1e-3, 100, 1100, 1e-4), (0.5, 0, 10, 0.0), (1.0, 3, 7, 0.1)):
        for step in (0, 1, 2, 3, 6, 50, 99, 100, 350, 600, 1099, 1100, 5000):
            close(fn(step, *args), reference_schedule(step, *args),
                  f"warmup_cosine({step}, max_lr={args[0]}, warmup_steps={args[1]}, "
                  f"total_steps={args[2]}, min_lr={args[3]})")
