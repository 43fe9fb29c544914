"""Lesson 13: fp16 and loss scaling."""
import numpy as np

from ...optim import LossScaler
from ..grading import close, exercise, expect, randn, unpack


@exercise("13")
def fp16_spacing(fn, rng):
    for x in (1.0, 1.5, 2048.0, 2049.0, 0.1, 60000.0, 2.0 ** -14, 3.0, 1000.0):
        want = float(np.spacing(np.float16(x)))
        close(fn(x), want, f"fp16_spacing({x})", rtol=0, atol=0)


@exercise("13")
def unscale_grads(fn, rng):
    grads = [randn(rng, 3) * 1024, randn(rng, 2, 2) * 1024]
    unscaled, found = unpack(fn([g.copy() for g in grads], 1024.0), ("unscaled", "found_inf"))
    expect(len(unscaled) == 2, f"unscaled should hold 2 arrays, got {len(unscaled)}")
    for i, (u, g) in enumerate(zip(unscaled, grads)):
        close(u, g / 1024, f"unscaled[{i}]")
    expect(found is False or found is np.False_, f"found_inf should be False for finite grads, got {found!r}")
    for bad in (np.inf, -np.inf, np.nan):
        broken = [grads[0].copy(), grads[1].copy()]
        broken[1][1, 0] = bad
        with np.errstate(all="ignore"):
            _, found = unpack(fn(broken, 1024.0), ("unscaled", "found_inf"))
        expect(bool(found), f"found_inf should be True when a gradient holds {bad}")


@exercise("13")
def loss_scaler_update(fn, rng):
    scaler = LossScaler(init_scale=1024.0, growth_interval=3)
    scale, good = 1024.0, 0
    flags = [False, False, False, False, True, False, False, False, False, True, True, False]
    for step, flag in enumerate(flags):
        scaler.update(np.asarray(flag))
        scale, good = unpack(fn(scale, good, flag, growth_interval=3), ("scale", "good_steps"))
        want = scaler.state_dict()
        close(scale, want["scale"], f"the scale after step {step} (overflows: {flags[:step + 1]})")
        expect(good == want["good_steps"], f"good_steps after step {step}: got {good}, "
                                           f"expected {want['good_steps']}")
