"""A Linear layer whose weight changes only at k fixed positions, trained as a k-vector.

`y = x (W + D)^T + b`, where `D[rows[i], cols[i]] = values[i]`; W stays frozen (b too, unless a
method trains biases in full, as GPS does). The custom
autograd function never forms D or a dense weight gradient:

- forward: the dense frozen product plus `index_add` of `x[..., cols] * values` into the output
  columns `rows`, O(tokens x k) extra work;
- backward: the gradient of `values` is `sum over tokens of grad_out[..., rows] * x[..., cols]`
  (O(tokens x k), no k x k intermediate); the input gradient is `grad_out W` plus the scattered
  sparse part, computed only when something below needs it (the bias's only when it trains).
  Only the input columns that hold a selected entry are kept for backward, not the whole input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _SparseDeltaLinear(torch.autograd.Function):
    # Index work runs on 2-D (tokens, features) views with index_select / index_add_ along dim 1:
    # on CPU, advanced indexing x[..., idx] along the last dimension of a 3-D tensor costs several
    # times as much, enough to rival the dense product itself at a 1% budget.
    @staticmethod
    def forward(ctx, x, weight, bias, values, rows, cols, used_cols, inverse):
        out = F.linear(x, weight, bias)
        kept = x.reshape(-1, x.shape[-1]).index_select(1, used_cols)  # only the columns in use
        out.view(-1, out.shape[-1]).index_add_(1, rows, kept.index_select(1, inverse) * values)
        ctx.save_for_backward(kept, weight, values, rows, cols, inverse)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        kept, weight, values, rows, cols, inverse = ctx.saved_tensors
        flat_out = grad_out.reshape(-1, grad_out.shape[-1])
        grad_rows = flat_out.index_select(1, rows)  # (tokens, k)
        grad_x = grad_bias = grad_values = None
        if ctx.needs_input_grad[2]:  # a bias that trains in full (GPS's)
            grad_bias = flat_out.sum(0)
        if ctx.needs_input_grad[3]:
            grad_values = (grad_rows * kept.index_select(1, inverse)).sum(0)
        if ctx.needs_input_grad[0]:
            grad_x = grad_out @ weight.to(grad_out.dtype)
            grad_x.view(-1, grad_x.shape[-1]).index_add_(
                1, cols, grad_rows * values.to(grad_out.dtype)
            )
        return grad_x, None, grad_bias, grad_values, None, None, None, None


class SparseDeltaLinear(nn.Module):
    """Wraps a frozen `nn.Linear`; only `values` (one per selected weight entry) trains."""

    def __init__(self, base: nn.Linear, rows: torch.Tensor, cols: torch.Tensor) -> None:
        super().__init__()
        if rows.shape != cols.shape or rows.ndim != 1:
            raise ValueError("rows and cols must be 1-D tensors of equal length")
        out_features, in_features = base.weight.shape
        if len(rows) and (rows.max() >= out_features or cols.max() >= in_features):
            raise ValueError(f"index outside the {out_features}x{in_features} weight")
        self.base = base
        for param in base.parameters():
            param.requires_grad_(False)
        device = base.weight.device
        rows, cols = rows.long().to(device), cols.long().to(device)
        used_cols, inverse = torch.unique(cols, return_inverse=True)
        self.register_buffer("rows", rows.clone())
        self.register_buffer("cols", cols.clone())
        self.register_buffer("used_cols", used_cols)
        self.register_buffer("inverse", inverse)
        self.values = nn.Parameter(torch.zeros(len(rows), dtype=base.weight.dtype, device=device))

    @property
    def positions(self) -> torch.Tensor:
        """Flat positions of the trained entries within the weight."""
        return self.rows * self.base.in_features + self.cols

    def merged_weight(self) -> torch.Tensor:
        """The effective dense weight W + D, for merging into a plain Linear and for checks."""
        merged = self.base.weight.detach().clone()
        merged[self.rows, self.cols] += self.values.detach().to(merged.dtype)
        return merged

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias, values = self.base.weight, self.base.bias, self.values
        if torch.is_autocast_enabled(x.device.type):
            # The custom function runs outside autocast, so cast as autocast would for F.linear.
            dtype = torch.get_autocast_dtype(x.device.type)
            x, weight, values = x.to(dtype), weight.to(dtype), values.to(dtype)
            bias = None if bias is None else bias.to(dtype)
        with torch.autocast(x.device.type, enabled=False):
            return _SparseDeltaLinear.apply(
                x, weight, bias, values, self.rows, self.cols, self.used_cols, self.inverse
            )
