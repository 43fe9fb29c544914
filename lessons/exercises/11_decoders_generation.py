"""Lesson 11 exercises: temperature, top-k, top-p, and one step of decoding with a KV cache.

Write the body of each function below (each one still raises NotImplementedError), then run
    python -m glassformer.lessons check 11
from the repository root: it tests each function and says what passed and why a failure failed.
Each docstring says what to write and which section of the lesson it belongs to.
"""
import numpy as np


def temperature_probs(logits, tau):
    """The sampling distribution at temperature tau (lesson 11, section 2).

    logits: (V,). Return softmax(logits / tau) (V,), computed stably; tau = 0 means greedy: a
    one-hot vector at the argmax.
    """
    raise NotImplementedError


def top_k_filter(logits, k):
    """Keep the k largest logits (lesson 11, section 2).

    logits: (V,) with no ties; 1 <= k <= V. Return a copy where every logit outside the k largest
    is -inf (so softmax gives it probability 0).
    """
    raise NotImplementedError


def top_p_filter(probs, p):
    """Nucleus (top-p) filtering (Holtzman et al. 2020; lesson 11, section 2).

    probs: (V,) a distribution with no ties; 0 < p <= 1. Keep the smallest set of the most likely
    tokens whose total probability is at least p, zero the rest, and renormalise. Return (V,).
    Example: [0.5, 0.3, 0.15, 0.05] with p = 0.75 keeps the first two: [0.625, 0.375, 0, 0].
    """
    raise NotImplementedError


def kv_cache_step(q, k_new, v_new, cache_k, cache_v):
    """One decoding step with a KV cache (lesson 11, section 3).

    q, k_new, v_new: (B, H, 1, D) the new token's query, key and value; cache_k, cache_v: (B, H, L, D)
    the keys and values of the L tokens before it (L may be 0). Append the new key and value to the
    caches, then attend from q over all L + 1 keys (no mask needed: every cached token is in the past,
    and the token sees itself). Return (y, cache_k, cache_v): y (B, H, 1, D) and the (B, H, L + 1, D)
    caches.
    """
    raise NotImplementedError
