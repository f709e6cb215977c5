"""Attention rollout and gradient-weighted rollout: known answers on a hand-built 2-block ViT whose
attention matrices are set by hand, and the attention read from timm's and torch's modules equal to
the probabilities computed from their weights, with every hook and switch restored afterwards."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from overfocus.attribution import attribute
from overfocus.attribution.attention import AttentionRecorder, explicit_self_attention
from overfocus.attribution.grad_rollout import gradient_rollout_relevance
from overfocus.attribution.rollout import attention_rollout_relevance
from overfocus.errors import OverfocusError
from overfocus.models import build_model

C, HEADS, K = 4, 2, 3


class FixedAttention(nn.Module):
    """Attention whose probabilities are given (heads x N x N): out = concat_h P_h v_h, v = x.
    Like timm's, it has `qkv`, `attn_drop` and a `fused_attn` switch; the fused path computes the
    same output without passing the probabilities through `attn_drop`."""

    def __init__(self, probs: torch.Tensor):
        super().__init__()
        self.register_buffer("probs", probs)
        self.qkv = nn.Identity()
        self.attn_drop = nn.Dropout(0.0)
        self.fused_attn = True

    def forward(self, x):
        b, n, c = x.shape
        v = x.view(b, n, HEADS, c // HEADS).transpose(1, 2)  # B x heads x N x d
        probs = self.probs.expand(b, -1, -1, -1)
        if self.fused_attn:
            out = torch.einsum("bhij,bhjd->bhid", probs, v)
        else:
            out = self.attn_drop(probs) @ v
        return out.transpose(1, 2).reshape(b, n, c)


class Block(nn.Module):
    def __init__(self, probs):
        super().__init__()
        self.attn = FixedAttention(probs)

    def forward(self, x):
        return x + self.attn(x)


class HandViT(nn.Module):
    """16 px images, 8 px patches: a class token and a 2 x 2 grid (N = 5); linear everywhere."""

    num_prefix_tokens = 1

    def __init__(self, p1, p2):
        super().__init__()
        torch.manual_seed(0)
        self.patch_embed = nn.Conv2d(3, C, 8, stride=8)
        self.cls_token = nn.Parameter(torch.randn(1, 1, C))
        self.blocks = nn.Sequential(Block(p1), Block(p2))
        self.head = nn.Linear(C, K)

    def forward(self, x):
        p = self.patch_embed(x).flatten(2).transpose(1, 2)
        return self.head(self.blocks(torch.cat([self.cls_token.expand(len(x), -1, -1), p], 1))[:, 0])


def _row_stochastic(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(HEADS, 5, 5, generator=g).softmax(-1) ** 2 / 1.0


def _probs(seed):
    p = _row_stochastic(seed)
    return p / p.sum(-1, keepdim=True)


def _upsample(raw, size=16):
    return F.interpolate(torch.as_tensor(raw, dtype=torch.float32)[:, None], size=(size, size), mode="bilinear",
                         align_corners=False)[:, 0]


P1, P2 = _probs(1), _probs(2)


def test_attention_rollout_known_answer():
    """R = A2 A1, A = (mean_h P + I) / 2; the class token's row over the 2 x 2 grid."""
    model = HandViT(P1, P2).eval()
    images = torch.randn(2, 3, 16, 16)
    a1 = (P1.numpy().mean(0) + np.eye(5)) / 2
    a2 = (P2.numpy().mean(0) + np.eye(5)) / 2
    known = (a2 @ a1)[0, 1:].reshape(2, 2)
    maps = attribute(model, images, torch.tensor([0, 2]), methods=("attention_rollout",), layer="")
    torch.testing.assert_close(maps["attention_rollout"], _upsample(np.stack([known, known])), rtol=1e-5, atol=1e-7)
    assert model.blocks[0].attn.fused_attn is True  # the fused path switched off for the pass only


def test_gradient_rollout_known_answer():
    """With v = x, no norm and a linear head on the class token, the gradients are by hand:
    y = W x2[0], x2 = (I + P2) x1, x1 = (I + P1) x0, per head on its channel slice:
    dy/dP2_h[0, j] = W_h . x1_h[j] (0 in other rows); dy/dP1_h[i, j] = (d_0i + P2_h[0, i]) W_h . x0_h[j]."""
    model = HandViT(P1, P2).eval()
    images = torch.randn(1, 3, 16, 16)
    target = 1
    with torch.no_grad():
        x0 = torch.cat([model.cls_token, model.patch_embed(images).flatten(2).transpose(1, 2)], 1)[0].numpy()
    w = model.head.weight[target].detach().numpy()
    d = C // HEADS
    p1, p2 = P1.numpy(), P2.numpy()
    g1, g2 = np.zeros_like(p1), np.zeros_like(p2)
    x1 = np.zeros_like(x0)
    for h in range(HEADS):
        sl = slice(h * d, (h + 1) * d)
        x1[:, sl] = x0[:, sl] + p1[h] @ x0[:, sl]
        g2[h, 0, :] = x1[:, sl] @ w[sl]
        g1[h] = np.outer(np.eye(5)[0] + p2[h, 0], x0[:, sl] @ w[sl])
    a1 = np.maximum(g1 * p1, 0).mean(0)
    a2 = np.maximum(g2 * p2, 0).mean(0)
    r = np.eye(5) + a1
    r = r + a2 @ r
    known = r[0, 1:].reshape(1, 2, 2)
    maps = attribute(model, images, torch.tensor([target]), methods=("grad_rollout", "attention_rollout"), layer="")
    assert known.max() > 0
    torch.testing.assert_close(maps["grad_rollout"], _upsample(known), rtol=1e-5, atol=1e-6)


def test_the_relevance_functions_on_identity_attention():
    eye = torch.eye(5).expand(1, HEADS, 5, 5)
    torch.testing.assert_close(attention_rollout_relevance([eye, eye])[0], torch.eye(5))
    torch.testing.assert_close(gradient_rollout_relevance([eye], [torch.zeros_like(eye)])[0], torch.eye(5))


def test_our_vit_rollout_reads_its_attention_and_restores_the_fused_path():
    model = build_model("vit_tiny", 4, width=0.25).eval()
    hooks_before = sum(len(m._forward_hooks) for m in model.modules())
    images = torch.randn(2, 3, 32, 32)
    maps = attribute(model, images, torch.tensor([0, 1]), methods=("attention_rollout", "grad_rollout", "grad_cam"),
                     layer="blocks.11.norm1")
    assert all(b.attn.fused_attn for b in model.blocks)
    assert sum(len(m._forward_hooks) for m in model.modules()) == hooks_before
    assert maps["attention_rollout"].shape == (2, 32, 32) and (maps["attention_rollout"] > 0).all()
    assert (maps["grad_rollout"] >= 0).all() and maps["grad_rollout"].amax() > 0


def test_timm_attention_read_equals_softmax_of_its_own_qkv():
    timm = pytest.importorskip("timm")
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, img_size=32, patch_size=8,
                              depth=2, embed_dim=48, num_heads=3).eval()
    x = torch.randn(2, 3, 32, 32)
    normed = []
    handles = [b.norm1.register_forward_hook(lambda _m, _i, out: normed.append(out)) for b in model.blocks]
    with torch.no_grad(), AttentionRecorder(model) as rec:
        model(x)
    for h in handles:
        h.remove()
    for block, z, read in zip(model.blocks, normed, rec.maps):
        a = block.attn
        q, k, _v = a.qkv(z).reshape(2, 17, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        torch.testing.assert_close(read, (q @ k.transpose(-2, -1) * a.scale).softmax(-1), rtol=1e-5, atol=1e-6)
    assert all(b.attn.fused_attn for b in model.blocks) and not any(b.attn.attn_drop._forward_hooks
                                                                    for b in model.blocks)


@pytest.mark.parametrize("batch_first", [True, False])
def test_explicit_self_attention_equals_torch_multihead_attention(batch_first):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(12, 3, batch_first=batch_first).eval()
    x = torch.randn(2, 7, 12) if batch_first else torch.randn(7, 2, 12)
    store = []
    ours, weights = explicit_self_attention(mha, store)(x, x, x, need_weights=True, average_attn_weights=False)
    theirs, their_weights = mha(x, x, x, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weights, their_weights, rtol=1e-5, atol=1e-6)
    assert store[0] is weights


def test_torchvision_vit_rollout_equals_the_rollout_of_torchs_own_weights():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                 hidden_dim=24, mlp_dim=48, num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    theirs = []

    def ask_weights(_m, args, kwargs):
        return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

    handles = []
    for layer in model.encoder.layers:
        handles.append(layer.self_attention.register_forward_pre_hook(ask_weights, with_kwargs=True))
        handles.append(layer.self_attention.register_forward_hook(lambda _m, _i, out: theirs.append(out[1])))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    known = attention_rollout_relevance(theirs)[:, 0, 1:].reshape(2, 4, 4)
    maps = attribute(model, x, torch.tensor([0, 1]), methods=("attention_rollout",), layer="")
    torch.testing.assert_close(maps["attention_rollout"], _upsample(known, 32), rtol=1e-5, atol=1e-6)
    assert all("forward" not in vars(layer.self_attention) for layer in model.encoder.layers)


def test_a_model_without_global_attention_is_one_line():
    model = build_model("cifarnet", 3, width=0.125)
    with pytest.raises(OverfocusError, match="no global self-attention") as err:
        attribute(model, torch.randn(1, 3, 32, 32), torch.tensor([0]), methods=("attention_rollout",), layer="")
    assert "\n" not in str(err.value)
