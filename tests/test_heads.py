"""Margin heads: target-logit formulas, ArcFace's fallback, and gradients through the margin."""
from __future__ import annotations

import math

import pytest
import torch

from slimface.errors import ModelError
from slimface.models import create_head, list_heads
from slimface.models.heads import MarginHead, _sphereface_psi

DIM, CLASSES = 6, 5


@pytest.mark.parametrize("name", list_heads())
def test_every_head_gives_finite_loss_and_gradients(name):
    torch.manual_seed(0)
    head = create_head(name, embedding_dim=DIM, num_classes=CLASSES)
    emb = torch.randn(7, DIM, requires_grad=True)
    out = head(emb, torch.arange(7) % CLASSES)
    out.loss.backward()
    assert out.logits.shape == (7, CLASSES)
    assert torch.isfinite(out.loss) and torch.isfinite(emb.grad).all()
    assert emb.grad.abs().sum() > 0


def _cos_input(values):
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def test_arcface_margin_gradient_is_the_true_derivative():
    # d/dcos cos(acos(c) + m) = sin(theta + m) / sin(theta); an identity backward would give 1.
    head = MarginHead(DIM, CLASSES, s=1.0, m2=0.5).double()
    c = _cos_input([0.9, 0.3, -0.2])
    head.target_logit(c).sum().backward()
    theta = torch.acos(c.detach())
    expected = torch.sin(theta + 0.5) / torch.sin(theta)
    torch.testing.assert_close(c.grad, expected)


def test_arcface_falls_back_when_theta_plus_margin_passes_pi():
    m = 0.5
    head = MarginHead(DIM, CLASSES, s=1.0, m2=m).double()
    c = _cos_input([math.cos(math.pi - 0.2)])  # theta + m > pi
    out = head.target_logit(c)
    torch.testing.assert_close(out, c.detach() - m * math.sin(m))
    grid = torch.linspace(-0.999, 0.999, 201, dtype=torch.float64)
    assert (head.target_logit(grid).diff() > 0).all()  # monotone in cos theta


def test_arcface_easy_margin_keeps_cosine_for_obtuse_angles():
    head = MarginHead(DIM, CLASSES, s=1.0, m2=0.5, easy_margin=True).double()
    c = torch.tensor([-0.4, 0.6], dtype=torch.float64)
    out = head.target_logit(c)
    assert out[0] == c[0]
    torch.testing.assert_close(out[1], torch.cos(torch.acos(c[1]) + 0.5))


def test_cosface_loss_subtracts_margin_from_the_target_only():
    head = create_head("cosface", embedding_dim=DIM, num_classes=CLASSES, s=10.0, m=0.35)
    emb = torch.randn(4, DIM)
    y = torch.tensor([0, 1, 2, 3])
    out = head(emb, y)
    expected = 10.0 * head.cosine(emb)
    torch.testing.assert_close(out.logits, expected.detach())  # returned logits: no margin
    expected[torch.arange(4), y] -= 10.0 * 0.35
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(expected, y))


def test_sphereface_psi_is_monotone_and_matches_cos_m_theta_on_first_interval():
    theta = torch.linspace(0, math.pi, 400, dtype=torch.float64)
    psi = _sphereface_psi(theta, 4)
    assert (psi.diff() <= 1e-12).all()
    small = theta < math.pi / 4
    torch.testing.assert_close(psi[small], torch.cos(4 * theta[small]))


def test_sphereface_lambda_anneals_towards_its_minimum():
    head = create_head("sphereface", embedding_dim=DIM, num_classes=CLASSES)
    first = head._lambda()
    head.iteration.fill_(100_000)
    assert first == 1000.0 and head._lambda() == 5.0


def test_center_loss_is_zero_at_the_centres():
    head = create_head("center_loss", embedding_dim=DIM, num_classes=CLASSES, loss_weight=1.0)
    y = torch.tensor([1, 3])
    assert head.center(head.center.centers[y].detach(), y).item() == 0.0


def test_invalid_margin_combination_is_rejected():
    with pytest.raises(ModelError, match="m1"):
        MarginHead(DIM, CLASSES, m1=2.5)
