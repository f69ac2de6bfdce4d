"""The sparse delta layer: exact gradients, equivalence with the dense update, frozen base."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from shpeft.sparse.delta import SparseDeltaLinear, _SparseDeltaLinear


def _layer(k=7, out_features=5, in_features=6, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    base = nn.Linear(in_features, out_features).to(dtype)
    flat = torch.randperm(out_features * in_features)[:k]
    layer = SparseDeltaLinear(base, flat // in_features, flat % in_features)
    with torch.no_grad():
        layer.values.normal_()
    return layer


def test_gradcheck_float64():
    layer = _layer()
    x = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    args = (
        layer.base.weight,
        layer.base.bias,
        layer.values,
        layer.rows,
        layer.cols,
        layer.used_cols,
        layer.inverse,
    )
    assert torch.autograd.gradcheck(
        lambda x, v: _SparseDeltaLinear.apply(x, *args[:2], v, *args[3:]), (x, layer.values)
    )


def test_matches_the_dense_equivalent():
    layer = _layer(k=11, dtype=torch.float32)
    x = torch.randn(2, 9, 6, requires_grad=True)
    out = layer(x)
    dense_weight = layer.merged_weight().requires_grad_(True)
    x_dense = x.detach().clone().requires_grad_(True)
    ref = nn.functional.linear(x_dense, dense_weight, layer.base.bias)
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x.grad, x_dense.grad)
    expected = dense_weight.grad[layer.rows, layer.cols]
    torch.testing.assert_close(layer.values.grad, expected)


def test_duplicate_columns_and_base_stays_frozen():
    base = nn.Linear(4, 4)
    layer = SparseDeltaLinear(base, torch.tensor([0, 1, 2]), torch.tensor([3, 3, 1]))
    assert [n for n, p in layer.named_parameters() if p.requires_grad] == ["values"]
    assert layer.used_cols.tolist() == [1, 3]
    x = torch.randn(5, 4)
    layer(x).sum().backward()
    assert base.weight.grad is None and layer.values.grad.shape == (3,)


def test_no_input_gradient_when_nothing_below_trains():
    layer = _layer(dtype=torch.float32)
    x = torch.randn(2, 6)  # does not require grad: backward skips the input gradient
    layer(x).sum().backward()
    assert x.grad is None and layer.values.grad is not None


def test_bf16_autocast_on_cpu_matches_float32_closely():
    layer = _layer(k=9, dtype=torch.float32)
    x = torch.randn(4, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), layer(x), atol=0.05, rtol=0.05)
    out.float().sum().backward()
    assert layer.values.grad.dtype == torch.float32


@pytest.mark.gpu
def test_cuda_bf16_matches_the_cpu_in_float32():
    """The sparse layer on a GPU under bf16 autocast, as training runs it there."""
    cpu = _layer(k=9, dtype=torch.float32)
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.randn(4, 6, requires_grad=True)
    x_gpu = x.detach().cuda().requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = gpu(x_gpu)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float().cpu(), cpu(x), atol=0.05, rtol=0.05)
    out.float().sum().backward()
    cpu(x).sum().backward()
    torch.testing.assert_close(gpu.values.grad.cpu(), cpu.values.grad, atol=0.05, rtol=0.05)
    torch.testing.assert_close(x_gpu.grad.cpu(), x.grad, atol=0.05, rtol=0.05)
