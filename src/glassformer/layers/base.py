"""Layer: the contract every layer keeps (forward, backward, live (param, grad) pairs, zero_grad)."""
import numpy as np

from .. import backend
from ..errors import UserError


class Layer:
    """Base class; subclasses name their parameters in own_parameters() and sub-layers in children().

    Convention: a parameter attribute `W` has its gradient in `dW`, allocated once and updated in place.
    """

    training = True

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dout):
        raise NotImplementedError

    def own_parameters(self):
        """{name: (param, grad)} of this layer alone."""
        return {}

    def children(self):
        """{name: Layer} of the sub-layers, in forward order."""
        return {}

    def named_parameters(self, prefix=""):
        """[(dotted name, (param, grad))] for this layer and every sub-layer."""
        out = [(prefix + name, pg) for name, pg in self.own_parameters().items()]
        for cname, child in self.children().items():
            out += child.named_parameters(prefix + cname + ".")
        return out

    def get_parameters(self):
        """Live (param, grad) pairs: optimizers update them in place."""
        return [pg for _, pg in self.named_parameters()]

    def n_parameters(self):
        """The number of scalar parameters (weights, biases, gains) in this layer and its sub-layers."""
        return sum(int(p.size) for p, _ in self.get_parameters())

    def zero_grad(self):
        for _, g in self.get_parameters():
            g[...] = 0

    def train(self, mode=True):
        self.training = mode
        for child in self.children().values():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def state_dict(self):
        """{dotted name: parameter array} (live arrays; copy before keeping)."""
        return {name: p for name, (p, _) in self.named_parameters()}

    def load_state_dict(self, state):
        """Copy arrays into the parameters in place, checking names and shapes first."""
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise UserError(f"parameters do not match the model: missing {missing[:5]}, "
                            f"unexpected {unexpected[:5]}")
        for name, p in own.items():
            if tuple(state[name].shape) != tuple(p.shape):
                raise UserError(f"parameter {name!r} has shape {tuple(state[name].shape)}, "
                                f"the model expects {tuple(p.shape)}")
        for name, p in own.items():
            xp = backend.array_module(p)
            p[...] = xp.asarray(state[name], dtype=p.dtype)

    def _convert(self, fn):
        """Rebuild every parameter and gradient with fn (device or dtype change); returns self."""
        for name in self.own_parameters():
            p = fn(getattr(self, name))
            setattr(self, name, p)
            setattr(self, "d" + name, new_grad(p))
        for child in self.children().values():
            child._convert(fn)
        return self

    def to(self, device):
        """Move the parameters to "cpu" or "cuda" (backend names too); rebuild optimizers afterwards."""
        return self._convert(lambda p: backend.to_device(backend.to_numpy(p), device)).flatten()

    def astype(self, dtype):
        """Cast the parameters (float64 for gradient checks); rebuild optimizers afterwards."""
        return self._convert(lambda p: p.astype(dtype)).flatten()

    def flatten(self):
        """Lay the parameters into one flat buffer per dtype and rank (matrices, vectors), as views;
        the gradients likewise. Returns self.

        Values, names and shapes stay; what changes is that an optimizer can update a whole buffer
        of adjacent parameters with one array operation instead of one per parameter (see
        optim.optimizers.adjacent_groups). Matrices and vectors get separate buffers, so the matrices
        that take weight decay lie next to each other.
        """
        owners = {}                                         # id(param) -> (layer, attribute name)
        for layer in self.sublayers():
            for name, (p, _) in layer.own_parameters().items():
                if getattr(layer, name, None) is p:         # the `W` / `dW` convention holds
                    owners.setdefault(id(p), (layer, name))
        params = [p for p, _ in self.get_parameters() if id(p) in owners]
        for key in dict.fromkeys((p.dtype, p.ndim >= 2) for p in params):
            group = [p for p in params if (p.dtype, p.ndim >= 2) == key]
            xp = backend.array_module(group[0])
            flat_p = xp.empty(sum(p.size for p in group), key[0])
            flat_g = new_grad(flat_p)
            start = 0
            for p in group:
                layer, name = owners[id(p)]
                view = flat_p[start:start + p.size].reshape(p.shape)
                view[...] = p
                setattr(layer, name, view)
                setattr(layer, "d" + name, flat_g[start:start + p.size].reshape(p.shape))
                start += p.size
        return self

    def in_memory(self):
        """Lay parameters still read from a mapped file (a loaded HF folder) flat in memory; returns self.

        Decoding reads every weight once per token. NumPy's own large buffers get the kernel's huge
        pages and a mapped file's pages do not, so the same reads miss the TLB far more (GPT-2 124M,
        one thread: 43 -> 38.4 ms a token, measured). Loading stays a mapping: the copy is made
        here, when a decoding loop first needs the weights, and only once (GPT-2: 0.13 s, or up to
        1.3 s when the kernel must first compact memory into huge pages).
        """
        if any(mapped(p) for p, _ in self.get_parameters()):
            self.flatten()
        return self

    def sublayers(self):
        """This layer and every sub-layer below it, depth first."""
        out = [self]
        for child in self.children().values():
            out += child.sublayers()
        return out


def mapped(p):
    """Whether the NumPy array p is a view of memory NumPy did not allocate (a mapped file)."""
    if not isinstance(p, np.ndarray):
        return False                                        # a device array: never a mapping
    while isinstance(p.base, np.ndarray):
        p = p.base
    return p.base is not None                               # a memoryview of an mmap.mmap


def new_grad(p):
    """p's gradient buffer, zeros: np.zeros is zeroed by the OS page by page on first use, where
    zeros_like writes every byte now (GPT-2's 500 MB of gradients: 2.4 s of loading, measured)."""
    return backend.array_module(p).zeros(p.shape, p.dtype)


def new_param(values, dtype):
    """A parameter array on the current backend from NumPy values."""
    return backend.to_device(np.asarray(values, dtype=dtype))
