"""Export the sentence encoder for serving: ONNX with dynamic batch and length.

It takes raw features ``(B, T, D)`` float32 and ``lengths (B,)`` int64 and returns the clip
embeddings ``(B, E)`` and projected frames ``(B, T', P)`` (what the inference engine needs);
standardisation is inside. The export is checked against PyTorch on batch sizes and lengths it
was not traced with.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from signlab.errors import SignlabError
from signlab.models.sentence import SentenceEncoderExport, SignTranslationModel

log = logging.getLogger(__name__)

CHECK_SHAPES = ((1, 37), (3, 91), (2, 5))  # (batch, frames) never used for export


def _example(model: SignTranslationModel, batch: int = 2, frames: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    dim = model.frontend.normalize.mean.numel()
    features = torch.randn(batch, frames, dim, generator=g)
    lengths = torch.tensor([frames] + [max(1, frames - 7 * (i + 1)) for i in range(batch - 1)])
    features[torch.arange(frames)[None] >= lengths[:, None]] = 0
    return features, lengths


def export_onnx(model: SignTranslationModel, path: str | Path, opset: int = 18) -> Path:
    """torch.onnx.export with the dynamo exporter and dynamic batch / frame dimensions."""
    path = Path(path)
    module = SentenceEncoderExport(model.eval())
    batch, frames = torch.export.Dim("batch", min=1), torch.export.Dim("frames", min=2, max=4096)
    for name in ("torch.onnx", "onnx_ir", "onnxscript"):  # e.g. "torchvision is not installed", "Replaced initializer"
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, _example(model), dynamo=True, opset_version=opset, input_names=["features", "lengths"],
            output_names=["embedding", "projected"],
            dynamic_shapes={"features": {0: batch, 1: frames}, "lengths": {0: batch}}, verbose=False,
        )
    program.save(str(path))
    return path


@torch.no_grad()
def verify(model: SignTranslationModel, run, atol: float = 1e-4) -> float:
    """Largest difference from PyTorch over CHECK_SHAPES; raises if above ``atol``."""
    worst = 0.0
    for i, (batch, frames) in enumerate(CHECK_SHAPES):
        features, lengths = _example(model, batch, frames, seed=i + 1)
        enc = model.eval().encode(features, lengths)
        emb, proj = run(features, lengths)
        for got, want in ((emb, enc.embedding), (proj, enc.projected)):
            worst = max(worst, float(np.abs(np.asarray(got) - want.numpy()).max()))
    if worst > atol:
        raise SignlabError(f"the exported encoder differs from PyTorch by {worst:.2e} (> {atol:.0e})")
    return worst


def onnx_runner(path: str | Path):
    from signlab.inference.bank import OnnxEncoder

    encoder = OnnxEncoder(path)
    return lambda f, n: encoder(f.numpy(), n.numpy())
