"""Loss layers: ``MSELoss``, ``L1Loss``, ``CrossEntropyLoss``, ``NLLLoss``, ``BCELoss``,
``BCEWithLogitsLoss``.

Each takes ``reduction='mean' | 'sum' | 'none'`` (the deprecated ``size_average``/``reduce``
pair is translated as PyTorch does). Class and element weights are buffers, so they appear in
``state_dict`` under ``weight`` (and ``pos_weight``) as in PyTorch.
"""
from __future__ import annotations

from ...ops import nn_ops
from ...tensor import Tensor
from ..module import Module

__all__ = ["MSELoss", "L1Loss", "CrossEntropyLoss", "NLLLoss", "BCELoss", "BCEWithLogitsLoss"]


class _Loss(Module):
    def __init__(self, size_average=None, reduce=None, reduction: str = "mean") -> None:
        super().__init__()
        if size_average is not None or reduce is not None:
            reduction = nn_ops._legacy_reduction(size_average, reduce)
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(
                f"{type(self).__name__}: reduction must be 'mean', 'sum' or 'none', got "
                f"{reduction!r}")
        self.reduction = reduction


class _WeightedLoss(_Loss):
    def __init__(self, weight: Tensor | None = None, size_average=None, reduce=None,
                 reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        if weight is not None and not isinstance(weight, Tensor):
            raise TypeError(
                f"{type(self).__name__}: weight must be a Tensor or None, got "
                f"{type(weight).__name__}")
        self.register_buffer("weight", weight)


class MSELoss(_Loss):
    """Mean squared error: ``mean((input - target) ** 2)`` (or sum, or per element).

    Shape:
        input ``(*)``, target the same shape; output a scalar, or ``(*)`` with ``'none'``.

    Example:
        >>> loss = nn.MSELoss()(model(x), y)
    """

    def forward(self, input, target):
        return nn_ops.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean absolute error: ``mean(|input - target|)`` (or sum, or per element)."""

    def forward(self, input, target):
        return nn_ops.l1_loss(input, target, reduction=self.reduction)


class CrossEntropyLoss(_WeightedLoss):
    """Cross entropy of logits against class indices or class probabilities.

    Args:
        weight: a rescaling weight per class, shape ``(C,)``.
        ignore_index: targets with this class index add nothing to the loss or the gradient
            (class-index targets only).
        reduction: ``'mean'`` (with class indices: divided by the summed weights of the
            non-ignored targets), ``'sum'`` or ``'none'``.
        label_smoothing: in [0, 1]; mixes the target with the uniform distribution.

    Shape:
        input ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``; target ``(N,)``, ``(N, d1, ...)``
        or ``()`` with indices in ``[0, C)``, or probabilities of the input's shape; output a
        scalar, or the target's shape with ``'none'``.

    Example:
        >>> loss = nn.CrossEntropyLoss()(logits, labels)   # logits (N, C), labels (N,)
    """

    def __init__(self, weight: Tensor | None = None, size_average=None,
                 ignore_index: int = -100, reduce=None, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__(weight, size_average, reduce, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be between 0.0 and 1.0, "
                             f"got {label_smoothing!r}")
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing

    def forward(self, input, target):
        return nn_ops.cross_entropy(input, target, self.weight, ignore_index=self.ignore_index,
                                    reduction=self.reduction,
                                    label_smoothing=self.label_smoothing)


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of log-probabilities (e.g. from ``LogSoftmax``).

    Shape:
        input ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``; target ``(N,)``, ``(N, d1, ...)``
        or ``()``.
    """

    def __init__(self, weight: Tensor | None = None, size_average=None,
                 ignore_index: int = -100, reduce=None, reduction: str = "mean") -> None:
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):
        return nn_ops.nll_loss(input, target, self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction)


class BCELoss(_WeightedLoss):
    """Binary cross entropy of probabilities: ``-w (t log x + (1 - t) log(1 - x))``, with
    the logs clamped at -100.

    Shape:
        input ``(*)`` in [0, 1], target the same shape.
    """

    def forward(self, input, target):
        return nn_ops.binary_cross_entropy(input, target, self.weight,
                                           reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid and binary cross entropy in one numerically stable op.

    Args:
        weight: a rescaling weight that broadcasts to the input.
        pos_weight: a weight of the positive examples, broadcast along the last dim (e.g.
            ``(C,)`` for multi-label input ``(N, C)``).

    Shape:
        input ``(*)`` logits, target the same shape.
    """

    def __init__(self, weight: Tensor | None = None, size_average=None, reduce=None,
                 reduction: str = "mean", pos_weight: Tensor | None = None) -> None:
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input, target):
        return nn_ops.binary_cross_entropy_with_logits(input, target, self.weight,
                                                       reduction=self.reduction,
                                                       pos_weight=self.pos_weight)
