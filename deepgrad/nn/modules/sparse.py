"""Lookup tables: ``Embedding``."""
from __future__ import annotations

import numpy as np

from ... import backend
from ...autograd.grad_mode import no_grad
from ...ops import nn_ops
from ...tensor import Tensor
from .. import init
from ..module import Module
from ..parameter import Parameter

__all__ = ["Embedding"]


def _padding_idx(name: str, padding_idx, num_embeddings: int):
    if padding_idx is None:
        return None
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(
            f"{name}: padding_idx must be within num_embeddings={num_embeddings}, got "
            f"{padding_idx}")
    return int(padding_idx) % num_embeddings


class Embedding(Module):
    """A table of ``num_embeddings`` vectors of size ``embedding_dim``, looked up by index.

    Args:
        num_embeddings: the size of the table.
        embedding_dim: the size of each vector.
        padding_idx: this row is initialised to zeros and gets no gradient (a learnable
            "padding" vector that stays fixed). Negative values count from the end.
        max_norm: if given, each row that a forward looks up and whose ``norm_type``-norm
            exceeds it is first scaled, in place, to norm ``max_norm`` (as in PyTorch). The
            weight changes in place, so an op that used it earlier in the same graph cannot
            backward: clone the weight for such uses.
        norm_type: the p of the p-norm for ``max_norm`` (default 2).
        scale_grad_by_freq: scale the gradients by the inverse frequency of the indices in
            the mini-batch.
        sparse: not supported (sparse gradients); must be False.

    The weight, of shape ``(num_embeddings, embedding_dim)``, is initialised from N(0, 1).

    Shape:
        input ``(*)`` integer indices, output ``(*, embedding_dim)``.

    Example:
        >>> emb = nn.Embedding(10, 3)
        >>> emb(deepgrad.tensor([[1, 2, 4], [4, 3, 9]])).shape
        (2, 3, 3)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0,
                 scale_grad_by_freq: bool = False, sparse: bool = False, _weight=None,
                 _freeze: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        for name, v in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"Embedding: {name} must be a positive integer, got {v!r}")
        if max_norm is not None and not max_norm >= 0:
            raise ValueError(f"Embedding: max_norm must be a norm (>= 0), got {max_norm!r}")
        if sparse:
            raise NotImplementedError(
                "Embedding: sparse gradients are not supported; use sparse=False")
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.padding_idx = _padding_idx("Embedding", padding_idx, self.num_embeddings)
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.sparse = sparse
        shape = (self.num_embeddings, self.embedding_dim)
        if _weight is None:
            dt = np.dtype(dtype) if dtype is not None else backend.get_default_dtype()
            self.weight = Parameter(np.empty(shape, dt), requires_grad=not _freeze)
            self.reset_parameters()
        else:
            w = _weight.data if isinstance(_weight, Tensor) else np.asarray(_weight)
            if w.shape != shape:
                raise ValueError(
                    f"Embedding: _weight of shape {w.shape} does not match "
                    f"(num_embeddings, embedding_dim) = {shape}")
            self.weight = Parameter(w, requires_grad=not _freeze)

    def reset_parameters(self) -> None:
        init.normal_(self.weight)
        self._fill_padding_idx_with_zero()

    def _fill_padding_idx_with_zero(self) -> None:
        if self.padding_idx is not None:
            with no_grad():
                self.weight.data[self.padding_idx] = 0

    def forward(self, input):
        return nn_ops.embedding(input, self.weight, self.padding_idx, self.max_norm,
                                self.norm_type, self.scale_grad_by_freq, False)

    @classmethod
    def from_pretrained(cls, embeddings, freeze: bool = True, padding_idx: int | None = None,
                        max_norm: float | None = None, norm_type: float = 2.0,
                        scale_grad_by_freq: bool = False, sparse: bool = False) -> Embedding:
        """An ``Embedding`` whose weight is ``embeddings`` (2-d), frozen unless
        ``freeze=False``. The padding row is used as given (not zeroed)."""
        w = embeddings.data if isinstance(embeddings, Tensor) else np.asarray(embeddings)
        if w.ndim != 2:
            raise ValueError(
                f"Embedding.from_pretrained: embeddings must be 2-d (num_embeddings, "
                f"embedding_dim), got shape {w.shape}")
        return cls(w.shape[0], w.shape[1], _weight=w, _freeze=freeze, padding_idx=padding_idx,
                   max_norm=max_norm, norm_type=norm_type,
                   scale_grad_by_freq=scale_grad_by_freq, sparse=sparse)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq}"
        if self.sparse is not False:
            s += ", sparse=True"
        return s
