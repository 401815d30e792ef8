from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from app.training.heads import ArcFaceHead, CosFaceHead, batch_hard_triplet_loss


def embeddings_and_labels(n=12, dim=16, classes=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=generator), torch.arange(n) % classes


def test_logits_shape():
    e, labels = embeddings_and_labels()
    for head in (ArcFaceHead(16, 4), CosFaceHead(16, 4)):
        assert head(e, labels).shape == (12, 4)


def test_arcface_margin_lowers_only_the_true_class_logit():
    e, labels = embeddings_and_labels()
    head, plain = ArcFaceHead(16, 4), ArcFaceHead(16, 4, margin=0.0)
    plain.load_state_dict(head.state_dict())
    with_margin, without = head(e, labels), plain(e, labels)
    target = F.one_hot(labels, 4).bool()

    assert torch.all(with_margin[target] < without[target])
    assert torch.allclose(with_margin[~target], without[~target])
    assert torch.allclose(without / 64.0, head.cosine(e))


def test_arcface_past_pi_uses_the_monotonic_fallback():
    head = ArcFaceHead(4, 2, margin=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    # theta ~ 170 degrees from class 0, so theta + m > pi.
    angle = math.radians(170)
    e = torch.tensor([[math.cos(angle), math.sin(angle), 0.0, 0.0]], requires_grad=True)
    logits = head(e, torch.tensor([0]))
    cos = math.cos(angle)

    assert cos < head._th
    expected = 64.0 * (cos - math.sin(math.pi - 0.5) * 0.5)
    assert math.isclose(logits[0, 0].item(), expected, rel_tol=1e-5)
    logits[0, 0].backward()
    assert torch.isfinite(e.grad).all()


def test_arcface_gradient_is_finite_when_cosine_is_exactly_one():
    head = ArcFaceHead(4, 2)
    e = head.weight.detach()[:1].clone().requires_grad_(True)
    head(e, torch.tensor([0])).sum().backward()
    assert torch.isfinite(e.grad).all()


def test_cosface_subtracts_the_margin_from_the_true_class():
    e, labels = embeddings_and_labels()
    head = CosFaceHead(16, 4, scale=10.0, margin=0.35)
    expected = 10.0 * (head.cosine(e) - 0.35 * F.one_hot(labels, 4))
    assert torch.allclose(head(e, labels), expected)


def separable_embeddings(classes=4, per_class=8, dim=16):
    generator = torch.Generator().manual_seed(3)
    centres = F.normalize(torch.randn(classes, dim, generator=generator), dim=1)
    labels = torch.arange(classes).repeat_interleave(per_class)
    noise = 0.05 * torch.randn(len(labels), dim, generator=generator)
    return centres[labels] + noise, labels


def test_training_a_head_on_separable_embeddings_reduces_the_loss():
    e, labels = separable_embeddings()
    for head in (ArcFaceHead(16, 4), CosFaceHead(16, 4)):
        torch.manual_seed(0)
        optimizer = torch.optim.SGD(head.parameters(), lr=0.1)
        losses = []
        for _ in range(15):
            loss = F.cross_entropy(head(e, labels), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        assert losses[-1] < 0.5 * losses[0], type(head).__name__


def test_triplet_loss_is_zero_for_separated_clusters():
    e, labels = separable_embeddings()
    assert batch_hard_triplet_loss(e, labels, margin=0.2).item() == 0.0


def test_triplet_loss_is_positive_for_mixed_clusters_and_has_gradients():
    e, labels = embeddings_and_labels()
    e.requires_grad_(True)
    loss = batch_hard_triplet_loss(e, labels)
    loss.backward()
    assert loss.item() > 0
    assert torch.isfinite(e.grad).all()


def test_triplet_loss_without_valid_anchors_is_a_differentiable_zero():
    e = torch.randn(3, 8, requires_grad=True)
    loss = batch_hard_triplet_loss(e, torch.tensor([0, 1, 2]))
    loss.backward()
    assert loss.item() == 0.0
