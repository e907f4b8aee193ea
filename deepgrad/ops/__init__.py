"""Differentiable operations, one family per module; each op is a ``Function`` subclass."""
