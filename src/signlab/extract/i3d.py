"""I3D (Carreira & Zisserman, 2017): Inception-v1 inflated to 3-D, RGB stream, 1024-dim features.

Module names follow the widely used PyTorch port of DeepMind's Kinetics weights
(``rgb_imagenet.pt``: ``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1a.bn.running_mean``, ...,
``logits.conv3d.bias``), with its TensorFlow-style "same" padding, so those checkpoints load as
they are (with ``weights_only=True``). Inputs are RGB in [-1, 1]; the feature of a window is the
average over the last block's time and space positions (1024 values).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from signlab.errors import SignlabError


def _same_pad(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    """TensorFlow's SAME padding for (B, C, T, H, W): extra padding goes after, as in TF."""
    pads = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - (s if size % s == 0 else size % s), 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm3d (eps 1e-3) + ReLU, with SAME padding."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn: bool = True, relu: bool = True,
                 bias: bool = False):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=0.001, momentum=0.01) if bn else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class Inception(nn.Module):
    def __init__(self, cin: int, c: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, c[5])

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class I3D(nn.Module):
    """InceptionI3d, RGB. ``forward`` gives (B, 1024) features; ``logits`` is kept so checkpoints
    with Kinetics-400 logits load without complaint (it is not used for features)."""

    FEATURE_DIM = 1024

    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = Inception(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = Inception(256, (128, 128, 192, 32, 96, 64))
        self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = Inception(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = Inception(512, (160, 112, 224, 24, 64, 64))
        self.Mixed_4d = Inception(512, (128, 128, 256, 24, 64, 64))
        self.Mixed_4e = Inception(512, (112, 144, 288, 32, 64, 64))
        self.Mixed_4f = Inception(528, (256, 160, 320, 32, 128, 128))
        self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = Inception(832, (256, 160, 320, 32, 128, 128))
        self.Mixed_5c = Inception(832, (384, 192, 384, 48, 128, 128))
        self.logits = Unit3D(1024, num_classes, bn=False, relu=False, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> (B, 1024)."""
        for name, module in self.named_children():
            if name != "logits":
                x = module(x)
        return x.mean(dim=(2, 3, 4))


def load_i3d_weights(model: I3D, path: str | Path) -> None:
    """Load a checkpoint in the public key layout; name missing or unexpected keys clearly."""
    path = Path(path)
    if not path.is_file():
        raise SignlabError(f"I3D weights {path} not found (e.g. rgb_imagenet.pt from the PyTorch port of "
                           "DeepMind's Kinetics-400 I3D)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise SignlabError(f"cannot read I3D weights {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise SignlabError(
            f"{path} does not have the I3D layout signlab reads (keys like 'Conv3d_1a_7x7.conv3d.weight'): "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        raise SignlabError(f"{path}: {k} has shape {tuple(state[k].shape)}, expected {tuple(expected[k].shape)}")
    model.load_state_dict(state, strict=False)


def window_starts(n_frames: int, stack: int, step: int) -> list[int]:
    """First frame of each window: every ``step`` frames while a whole window fits, plus one
    ending at the last frame if the tail is left over. A clip shorter than a window gives one
    window (padded by repeating its last frame)."""
    if n_frames <= stack:
        return [0]
    starts = list(range(0, n_frames - stack + 1, step))
    if starts[-1] + stack < n_frames:
        starts.append(n_frames - stack)
    return starts


class I3DExtractor:
    """Sliding-window I3D features for whole clips, windows batched.

    Defaults suit gloss-level work: 16-frame windows every 4 frames give one 1024-dim vector per
    0.16 s at 25 fps (the seed's 64 / 32 gave one per 1.3 s, too coarse for signs).
    """

    def __init__(self, weights: str | Path | None, device: str = "cpu", stack_size: int = 16, step_size: int = 4,
                 batch_size: int = 8):
        self.model = I3D()
        if weights is not None:
            load_i3d_weights(self.model, weights)
        self.model = self.model.to(device).eval()
        self.device, self.stack, self.step, self.batch_size = torch.device(device), stack_size, step_size, batch_size

    @torch.no_grad()
    def extract(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 frames -> (windows, 1024) float32."""
        if len(frames) == 0:
            raise SignlabError("no frames to extract I3D features from")
        starts = window_starts(len(frames), self.stack, self.step)
        index = np.minimum(np.asarray(starts)[:, None] + np.arange(self.stack), len(frames) - 1)  # edge-pad short clips
        out = []
        for b in range(0, len(starts), self.batch_size):
            clip = torch.from_numpy(frames[index[b : b + self.batch_size]]).to(self.device)  # (B, T, H, W, 3)
            x = clip.permute(0, 4, 1, 2, 3).float().div_(127.5).sub_(1.0)
            out.append(self.model(x).float().cpu())
        return torch.cat(out).numpy()


def window_times(n_frames: int, stack: int, step: int, fps: float) -> np.ndarray:
    """Centre time (seconds) of each window."""
    return (np.asarray(window_starts(n_frames, stack, step)) + min(stack, n_frames) / 2) / fps

