"""Classification heads and losses for training face embeddings.

Every head maps ``(embeddings, labels)`` to a :class:`HeadOutput` ``(loss, logits)``; the
trainer only sees that pair, so switching loss is a config change (``head="arcface"``).

* ``softmax``: Fc6 (``Linear`` with bias) + cross-entropy, the classifier of Face-ResNet
  models A-C in Zhou et al. (2018), "Face Recognition Method Based on Quantized Residual
  Convolutional Neural Networks".
* ``center_loss``: softmax plus Wen et al.'s center loss (ECCV 2016), Zhou et al.'s baseline:
  ``L = CE + lambda/2 * ||x - c_y||^2`` with learnable centres.
* ``sphereface`` (A-Softmax, Liu et al. 2017, https://arxiv.org/abs/1704.08063): target logit
  ``psi(theta) = (-1)^k cos(m theta) - 2k`` (monotone for integer m), blended with
  ``cos(theta)`` by the annealed lambda of the paper so it trains from scratch.
* ``cosface`` / ``am_softmax`` (Wang et al. 2018): ``s (cos(theta) - m)``.
* ``arcface`` (Deng et al. 2019, https://arxiv.org/abs/1801.07698): ``s cos(theta + m)``; when
  ``theta + m > pi`` the target falls back to ``cos(theta) - m sin(m)`` (insightface's rule,
  which keeps the target monotone), or with ``easy_margin`` to ``cos(theta)`` where
  ``cos(theta) < 0``.
* ``combined_margin``: arcface_torch's ``s (cos(m1 theta + m2) - m3)``.

Margins are applied with autograd on (STYLE.md pitfall): arcface_torch edits logits under
``no_grad`` so the margin's backward is the identity; here the gradient of the target logit is
the true derivative of the margin function (tested in tests/test_heads.py).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from slimface.errors import ModelError
from slimface.models._registry import register_head

_EPS = 1e-7


class HeadOutput(NamedTuple):
    loss: torch.Tensor
    logits: torch.Tensor


class SoftmaxHead(nn.Module):
    """Fc6 (``Linear`` with bias) + cross-entropy: Face-ResNet's classifier (Zhou et al. 2018)."""

    def __init__(self, embedding_dim: int, num_classes: int):
        super().__init__()
        self.fc6 = nn.Linear(embedding_dim, num_classes)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> HeadOutput:
        logits = self.fc6(emb)
        return HeadOutput(F.cross_entropy(logits, labels), logits)


class CenterLoss(nn.Module):
    """``1/2 ||x_i - c_{y_i}||^2`` averaged over the batch; centres are learned parameters.

    Wen et al. update centres with their own rate alpha; with SGD on the centres the update is
    the same direction, and the rate is ``lr * loss_weight`` (set ``alpha``-like behaviour via
    the centre learning-rate multiplier in the trainer if needed).
    """

    def __init__(self, embedding_dim: int, num_classes: int):
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, embedding_dim) * 0.01)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return 0.5 * (emb - self.centers[labels]).pow(2).sum(1).mean()


class SoftmaxCenterHead(nn.Module):
    """Softmax + ``loss_weight`` (lambda) x center loss: Zhou et al.'s center-loss baseline."""

    def __init__(self, embedding_dim: int, num_classes: int, loss_weight: float = 0.003):
        super().__init__()
        self.softmax = SoftmaxHead(embedding_dim, num_classes)
        self.center = CenterLoss(embedding_dim, num_classes)
        self.loss_weight = loss_weight

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> HeadOutput:
        out = self.softmax(emb, labels)
        return HeadOutput(out.loss + self.loss_weight * self.center(emb, labels), out.logits)


def _sphereface_psi(theta: torch.Tensor, m: int) -> torch.Tensor:
    """``(-1)^k cos(m theta) - 2k`` with ``k = floor(m theta / pi)``: monotone on [0, pi]."""
    k = torch.floor(m * theta / math.pi).detach()
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * torch.cos(m * theta) - 2.0 * k


class MarginHead(nn.Module):
    """Cosine classifier ``s * cos(theta_j)`` with a margin on the target class.

    Target logit: ``s * (cos(m1 * theta + m2) - m3)``, with SphereFace's monotone psi when
    ``m1 > 1`` and ArcFace's fallback when ``theta + m2 > pi``. Non-target logits are
    ``s * cos(theta_j)``. The loss uses the margin logits; ``logits`` in the output are the
    plain ``s * cos(theta_j)`` (prediction / train accuracy).
    """

    def __init__(self, embedding_dim: int, num_classes: int, s: float = 64.0, m1: float = 1.0,
                 m2: float = 0.0, m3: float = 0.0, easy_margin: bool = False,
                 lambda_base: float = 0.0, lambda_min: float = 0.0, lambda_gamma: float = 0.12,
                 lambda_power: float = 1.0):
        super().__init__()
        if m1 < 1 or (m1 != 1 and (m1 != int(m1) or m2 or m3)):
            raise ModelError(f"m1 must be 1 or an integer >1 used alone (SphereFace); got m1={m1},"
                             f" m2={m2}, m3={m3}")
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)
        self.s, self.m1, self.m2, self.m3 = float(s), float(m1), float(m2), float(m3)
        self.easy_margin = easy_margin
        self.lambda_base, self.lambda_min = lambda_base, lambda_min
        self.lambda_gamma, self.lambda_power = lambda_gamma, lambda_power
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return (f"classes={self.weight.shape[0]}, dim={self.weight.shape[1]}, s={self.s}, "
                f"m1={self.m1}, m2={self.m2}, m3={self.m3}")

    def cosine(self, emb: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(emb, dim=1), F.normalize(self.weight, dim=1))

    def target_logit(self, cos_t: torch.Tensor) -> torch.Tensor:
        """Margin-modified cosine of the target class (before scaling by ``s``)."""
        if self.m1 == 1 and self.m2 == 0:
            return cos_t - self.m3
        theta = torch.acos(cos_t.clamp(-1 + _EPS, 1 - _EPS))
        if self.m1 != 1:
            psi = _sphereface_psi(theta, int(self.m1))
            lam = self._lambda()
            return (lam * cos_t + psi) / (1 + lam) if lam > 0 else psi
        phi = torch.cos(theta + self.m2)
        if self.easy_margin:
            phi = torch.where(cos_t > 0, phi, cos_t)
        else:
            phi = torch.where(theta + self.m2 <= math.pi, phi,
                              cos_t - self.m2 * math.sin(self.m2))
        return phi - self.m3

    def _lambda(self) -> float:
        """SphereFace's annealed blend ``max(min, base * (1 + gamma * it)^-power)``."""
        if self.lambda_base <= 0:
            return 0.0
        it = float(self.iteration)
        return max(self.lambda_min, self.lambda_base * (1 + self.lambda_gamma * it)
                   ** (-self.lambda_power))

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> HeadOutput:
        cos = self.cosine(emb)
        idx = torch.arange(cos.shape[0], device=cos.device)
        target = self.target_logit(cos[idx, labels])
        one_hot = F.one_hot(labels, cos.shape[1]).to(cos.dtype)
        margin_logits = self.s * (cos + one_hot * (target - cos[idx, labels]).unsqueeze(1))
        if self.training:
            self.iteration += 1
        # The loss sees the margin; the returned logits do not, so train accuracy measures
        # classification (with the margin it stays near 0 long after the model has learned).
        return HeadOutput(F.cross_entropy(margin_logits, labels), self.s * cos.detach())


@register_head
def softmax(embedding_dim: int, num_classes: int) -> SoftmaxHead:
    return SoftmaxHead(embedding_dim, num_classes)


@register_head(aliases=("softmax_center",))
def center_loss(embedding_dim: int, num_classes: int, loss_weight: float = 0.003) -> SoftmaxCenterHead:
    return SoftmaxCenterHead(embedding_dim, num_classes, loss_weight)


@register_head(aliases=("a_softmax",))
def sphereface(embedding_dim: int, num_classes: int, s: float = 30.0, m: float = 4,
               lambda_base: float = 1000.0, lambda_min: float = 5.0) -> MarginHead:
    """A-Softmax on normalised features (scale ``s``) with the paper's lambda annealing."""
    return MarginHead(embedding_dim, num_classes, s=s, m1=m, lambda_base=lambda_base,
                      lambda_min=lambda_min)


@register_head(aliases=("am_softmax",))
def cosface(embedding_dim: int, num_classes: int, s: float = 64.0, m: float = 0.35) -> MarginHead:
    return MarginHead(embedding_dim, num_classes, s=s, m3=m)


@register_head
def arcface(embedding_dim: int, num_classes: int, s: float = 64.0, m: float = 0.5,
            easy_margin: bool = False) -> MarginHead:
    return MarginHead(embedding_dim, num_classes, s=s, m2=m, easy_margin=easy_margin)


@register_head
def combined_margin(embedding_dim: int, num_classes: int, s: float = 64.0, m1: float = 1.0,
                    m2: float = 0.5, m3: float = 0.0) -> MarginHead:
    """arcface_torch's ``margin_list = (m1, m2, m3)``."""
    return MarginHead(embedding_dim, num_classes, s=s, m1=m1, m2=m2, m3=m3)
