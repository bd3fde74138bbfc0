"""Seed notes 14, 15 and 16 as tests of the building blocks the manual engines use: autograd's
gradients, their accumulation until zeroed, and one backprop step, each checked against the
NumPy engine's analytic gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from trainlab.config.training import MSELossConfig
from trainlab.engines.manual import autograd_step, numpy_loss, numpy_step

MSE = numpy_loss(MSELossConfig())


def test_note_14_gradient_of_a_mean_is_8_times_a_plus_2_over_3():
    a = torch.rand(3, generator=torch.Generator().manual_seed(14), requires_grad=True)
    d = (4 * (a + 2) * (a + 2)).mean()  # the note's b = a + 2, c = b*b*4, d = c.mean()
    d.backward()
    expected = 8 * (a.detach() + 2) / 3
    torch.testing.assert_close(a.grad, expected)
    # The same number from the NumPy engine's analytic MSE gradient: d = 4 * MSE(a, -2).
    value, grad = MSE(a.detach().numpy(), np.full(3, -2.0, dtype=np.float32))
    assert 4 * value == pytest.approx(d.item(), rel=1e-6)
    np.testing.assert_allclose(4 * grad, expected.numpy(), rtol=1e-6)


def test_note_15_the_autograd_engine_zeroes_its_gradients_every_step():
    """Two steps of autograd_step equal two NumPy steps: nothing leaks from step 1 into step 2."""
    x = np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.0]])
    y = np.array([[1.0], [2.0], [-1.0]])
    start = [np.array([[0.3, -0.2]]), np.array([0.1])]
    params = [torch.tensor(p, requires_grad=True) for p in start]
    arrays = [p.copy() for p in start]
    for _ in range(2):
        autograd_step(torch.tensor(x), torch.tensor(y), params, nn.MSELoss(), lr=0.1)
        assert all(p.grad is not None and not p.grad.any() for p in params)
        numpy_step(x, y, arrays, MSE, lr=0.1)
    for tensor, array in zip(params, arrays, strict=True):
        np.testing.assert_allclose(tensor.detach().numpy(), array, rtol=0, atol=1e-15)


def test_note_16_one_backprop_step():
    """The note's numbers (x 1, y 2, w 1: loss 1, dloss/dw = -2) through the engines' building
    blocks: w -= lr * -2."""
    value, dpred = MSE(np.array([[1.0]]), np.array([[2.0]]))
    assert value == 1.0 and (dpred.T @ np.array([[1.0]])).item() == -2.0
    weight = [torch.tensor([[1.0]], requires_grad=True)]
    step_loss = autograd_step(
        torch.tensor([[1.0]]), torch.tensor([[2.0]]), weight, nn.MSELoss(), 0.5
    )
    assert step_loss.item() == 1.0 and weight[0].item() == 2.0  # 1 - 0.5 * (-2)
    arrays = [np.array([[1.0]])]
    assert numpy_step(np.array([[1.0]]), np.array([[2.0]]), arrays, MSE, 0.5) == 1.0
    assert arrays[0].item() == 2.0
