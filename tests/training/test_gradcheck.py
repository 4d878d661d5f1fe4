"""Finite-difference check of the fusion layer's gradients (learned fusion back-propagates through it)."""

from __future__ import annotations

import torch

from app.training.fusion import Fusion


def _fusion64() -> Fusion:
    torch.manual_seed(0)
    f = Fusion().double()
    with torch.no_grad():
        f.log_temperature.copy_(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64))
        f.weight.copy_(torch.tensor([0.9, 1.3, 0.7], dtype=torch.float64))
        f.bias.copy_(torch.tensor([0.1, -0.2, 0.05], dtype=torch.float64))
        f.log_branch_prior.copy_(
            torch.log(torch.tensor([[0.3, 0.3, 0.4], [0.5, 0.2, 0.3], [0.6, 0.2, 0.2]], dtype=torch.float64))
        )
        f.log_prior.copy_(torch.log(torch.tensor([0.25, 0.4, 0.35], dtype=torch.float64)))
    return f


def test_fusion_gradients_match_finite_differences() -> None:
    f = _fusion64()
    present = torch.tensor(
        [[True, True, True], [True, False, True], [False, True, False], [False, False, False]]
    )
    logits = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    weight = f.weight.detach().clone().requires_grad_(True)
    bias = f.bias.detach().clone().requires_grad_(True)
    log_t = f.log_temperature.detach().clone().requires_grad_(True)

    def fn(
        lg: torch.Tensor, w: torch.Tensor, b: torch.Tensor, lt: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # functional call so that autograd sees w, b, lt as inputs
        return torch.func.functional_call(f, {"weight": w, "bias": b, "log_temperature": lt}, (lg, present))

    assert torch.autograd.gradcheck(fn, (logits, weight, bias, log_t), eps=1e-6, atol=1e-7)


def test_absent_modalities_get_zero_gradient() -> None:
    f = _fusion64()
    present = torch.tensor([[True, False, True]])
    logits = torch.randn(1, 3, 3, dtype=torch.float64, requires_grad=True)
    probs, _ = f(logits, present)
    torch.log(probs[0, 1]).backward()
    assert logits.grad is not None
    assert torch.all(logits.grad[0, 1] == 0)
    assert torch.any(logits.grad[0, 0] != 0) and torch.any(logits.grad[0, 2] != 0)
