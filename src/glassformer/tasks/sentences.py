"""Next-word prediction on eight fixed short sentences: the smallest language-modelling task."""
from collections import Counter, defaultdict

import numpy as np

SENTENCES = [
    "the cat sat on the mat",
    "the dog sat on the rug",
    "a cat saw the dog",
    "a dog saw the cat",
    "the bird sang",
    "the cat ran to the dog",
    "the dog ran to the mat",
    "a bird sat on the rug",
]
SPECIALS = ["<PAD>", "<START>", "<END>"]
PAD, START, END = 0, 1, 2


def vocabulary():
    """<PAD>, <START>, <END>, then every word in order of first appearance (13 words)."""
    words = []
    for w in " ".join(SENTENCES).split():
        if w not in words:
            words.append(w)
    return SPECIALS + words


def encode_sentence(sentence, vocab):
    """'the cat' -> [<START>, the, cat, <END>] ids."""
    index = {w: i for i, w in enumerate(vocab)}
    return [START] + [index[w] for w in sentence.split()] + [END]


def dataset(vocab=None):
    """Inputs and next-word targets (N, T), right-padded; targets use <PAD> (ignored) at padding."""
    vocab = vocab or vocabulary()
    seqs = [encode_sentence(s, vocab) for s in SENTENCES]
    T = max(len(s) for s in seqs) - 1
    x = np.full((len(seqs), T), PAD, dtype=np.int64)
    y = np.full((len(seqs), T), PAD, dtype=np.int64)
    for i, s in enumerate(seqs):
        x[i, :len(s) - 1] = s[:-1]
        y[i, :len(s) - 1] = s[1:]
    return x, y


def best_possible_accuracy():
    """The next-word accuracy of a perfect model: some prefixes have several continuations."""
    nexts = defaultdict(Counter)
    for s in SENTENCES:
        ids = encode_sentence(s, vocabulary())
        for t in range(1, len(ids)):
            nexts[tuple(ids[:t])][ids[t]] += 1
    total = sum(sum(c.values()) for c in nexts.values())
    return sum(max(c.values()) for c in nexts.values()) / total
