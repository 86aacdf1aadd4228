"""The front end every signlab model shares: standardisation, projection, subsampling, masks."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn

from signlab import pose


class Stats(Protocol):
    """Per-dimension feature statistics (:class:`signlab.data.stats.FeatureStats`)."""

    mean: np.ndarray
    std: np.ndarray


def padding_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) lengths -> (B, T) True at padded positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] >= lengths[:, None]


def subsampled_lengths(lengths: Tensor | int, factor: int):
    """Frames left after ``log2(factor)`` stride-2 convolutions (kernel 3, padding 1)."""
    for _ in range(factor.bit_length() - 1):
        lengths = (lengths - 1) // 2 + 1
    return lengths


def auto_subsampling(pose_layout: bool) -> int:
    """``model.subsampling: auto``: 4 for 25 fps pose (about 3.5 encoder steps a sign), 1 for window features."""
    return 4 if pose_layout else 1


class FeatureNormalizer(nn.Module):
    """``(x - mean) / std`` with the train split's statistics (see :class:`FeatureStats`).

    With ``pose_layout`` (features of kind pose/holistic-540), values of landmarks that are missing
    in a frame (all zeros) stay zero, as do padded frames. The statistics are set from the bundle's
    ``stats.npz`` and are not part of the weights file.
    """

    def __init__(self, dim: int, pose_layout: bool = False):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim), persistent=False)
        self.register_buffer("std", torch.ones(dim), persistent=False)
        self.is_pose = pose_layout

    def set_stats(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype))

    def forward(self, x: Tensor) -> Tensor:
        out = (x - self.mean) / self.std
        if not self.is_pose:
            return out
        # the 33 body points' (x, y, z, visibility) groups, then the (x, y, z) of the others: views,
        # reductions and broadcasts only (gathers and expands over the last axis cost half of the
        # encoder's time on ONNX Runtime and a third on PyTorch)
        n = pose.POSE_DIM
        body, rest = x[..., :n].unflatten(-1, (pose.POSE_POINTS, 4)), x[..., n:].unflatten(-1, (-1, 3))
        body_seen = (body[..., :3].abs().amax(-1, keepdim=True) > 0).to(out.dtype)
        rest_seen = (rest.abs().amax(-1, keepdim=True) > 0).to(out.dtype)
        return torch.cat([(out[..., :n].unflatten(-1, body.shape[-2:]) * body_seen).flatten(-2),
                          (out[..., n:].unflatten(-1, rest.shape[-2:]) * rest_seen).flatten(-2)], -1)


class HandShape(nn.Module):
    """Each hand's 21 points relative to its wrist, in units of its palm (wrist to the middle
    finger's knuckle): the handshape whatever the arm does. Zero for a missing point, and for the
    whole hand when its wrist or that knuckle is missing. Signs that differ only in handshape
    (minimal pairs) differ here by whole units, where in body coordinates they differ by a few
    hundredths of a shoulder width."""

    dim = 2 * pose.HAND_DIM
    KNUCKLE = 9  # MediaPipe's middle-finger MCP

    def forward(self, x: Tensor) -> Tensor:
        hands = x[..., pose.POSE_DIM : pose.POSE_DIM + 2 * pose.HAND_DIM].unflatten(-1, (2, pose.HAND_POINTS, 3))
        seen = (hands.abs().amax(-1, keepdim=True) > 0).to(x.dtype)  # (..., 2, 21, 1)
        relative = hands - hands[..., :1, :]
        palm = relative[..., self.KNUCKLE : self.KNUCKLE + 1, :].square().sum(-1, keepdim=True).sqrt().clamp(min=1e-6)
        usable = seen[..., :1, :] * seen[..., self.KNUCKLE : self.KNUCKLE + 1, :]
        return (relative / palm * seen * usable).flatten(-3)


class InputProjection(nn.Sequential):
    """Any feature dim (1024 for I3D, 540 for pose) to d_model, as in the seed's I3DBackbone."""

    def __init__(self, input_dim: int, d_model: int, dropout: float):
        super().__init__(nn.Linear(input_dim, d_model), nn.LayerNorm(d_model), nn.Dropout(dropout))


class ConvSubsampling(nn.Module):
    """Stride-2 1-D convolutions that shorten the sequence by ``factor`` (1, 2 or 4)."""

    def __init__(self, d_model: int, factor: int):
        super().__init__()
        self.factor = factor
        self.convs = nn.ModuleList(
            nn.Conv1d(d_model, d_model, kernel_size=3, stride=2, padding=1) for _ in range(factor.bit_length() - 1)
        )
        self.act = nn.GELU()

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        for conv in self.convs:
            x = x * ~padding_mask(lengths, x.size(1))[..., None]  # padding must read as zeros
            x = self.act(conv(x.transpose(1, 2)).transpose(1, 2))
            lengths = subsampled_lengths(lengths, 2)
        return x, lengths


class FrontEnd(nn.Module):
    """Raw features (B, T, D) and lengths -> (B, T', d_model), lengths, padding mask; with
    ``hand_shape`` (pose features), the standardised features and :class:`HandShape` are projected
    together."""

    def __init__(self, input_dim: int, d_model: int, dropout: float, subsampling: int = 1, pose_layout: bool = False,
                 hand_shape: bool = False):
        super().__init__()
        self.normalize = FeatureNormalizer(input_dim, pose_layout)
        self.hand_shape = HandShape() if pose_layout and hand_shape else None  # pose only: other kinds have no hands
        self.project = InputProjection(input_dim + (HandShape.dim if self.hand_shape else 0), d_model, dropout)
        self.subsample = ConvSubsampling(d_model, subsampling)

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.normalize(features)
        if self.hand_shape is not None:
            x = torch.cat([x, self.hand_shape(features)], -1)
        x, lengths = self.subsample(self.project(x), lengths)
        return x, lengths, padding_mask(lengths, x.size(1))
