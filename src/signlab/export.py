"""Export a bundle's networks for serving: ONNX with dynamic batch and length, checked against PyTorch.

A sentence bundle gets ``encoder.onnx``: raw features ``(B, T, D)`` float32 and ``lengths (B,)``
int64 in, the clip embeddings ``(B, E)`` and projected frames ``(B, T', P)`` out (what the
inference engine needs). A gloss bundle gets

* ``encoder.onnx``: features and lengths in, CTC logits ``(B, T', V)``, their lengths and the
  encoder output ``(B, T', d)`` out;
* with an attention decoder, ``decoder_memory.onnx``: the encoder output in, every decoder layer's
  cross-attention keys (transposed) and values out, computed once per clip; and ``decoder.onnx``:
  ``L`` new tokens of ``N`` rows after ``P`` decoded positions (their keys and values, ``past_*``)
  in, the logits and the keys and values of all ``P + L`` positions (``present_*``) out
  (:meth:`TransformerDecoder.forward_with_past`): one graph for teacher forcing (``P = 0``) and
  for cached incremental steps (``L = 1``).

Standardisation is inside the encoders. Every graph is checked against PyTorch on shapes it was not
exported with.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from signlab.atomic import write_bytes
from signlab.errors import SignlabError
from signlab.models.sentence import SentenceEncoderExport, SignTranslationModel

log = logging.getLogger(__name__)

CHECK_SHAPES = ((1, 37), (3, 91), (2, 5))  # (batch, frames) never used for export
OPSET = 18


def _example(model: nn.Module, batch: int = 2, frames: int = 64, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    dim = model.frontend.normalize.mean.numel()
    features = torch.randn(batch, frames, dim, generator=g)
    lengths = torch.tensor([frames] + [max(1, frames - 7 * (i + 1)) for i in range(batch - 1)])
    features[torch.arange(frames)[None] >= lengths[:, None]] = 0
    return features, lengths


def _export(module: nn.Module, args: tuple, path: Path, dynamic: dict[str, Any], outputs: list[str],
            inputs: list[str] | None = None) -> Path:
    """torch.onnx.export with the dynamo exporter: ``dynamic`` maps each argument to its dynamic
    dimensions; the graph's inputs are named ``inputs`` (default: the arguments' names)."""
    for name in ("torch.onnx", "onnx_ir", "onnxscript"):  # e.g. "torchvision is not installed", "Replaced initializer"
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module.eval(), args, dynamo=True, opset_version=OPSET,
                                    input_names=inputs or list(dynamic), output_names=outputs, dynamic_shapes=dynamic,
                                    verbose=False)
    write_bytes(path, program.model_proto.SerializeToString())  # whole or not at all
    return path


def _clip_dims() -> dict[str, dict[int, torch.export.Dim]]:
    batch, frames = torch.export.Dim("batch", min=1), torch.export.Dim("frames", min=2, max=4096)
    return {"features": {0: batch, 1: frames}, "lengths": {0: batch}}


def export_onnx(model: SignTranslationModel, path: str | Path) -> Path:
    """A sentence model's encoder as ``path``."""
    return _export(SentenceEncoderExport(model.eval()), _example(model), Path(path), _clip_dims(),
                   ["embedding", "projected", "context"] + ([] if model.gloss_head is None else ["gloss_logits"]))


@torch.no_grad()
def verify(model: SignTranslationModel, run, atol: float = 1e-4) -> float:
    """Largest difference from PyTorch over CHECK_SHAPES; raises if above ``atol``."""
    worst = 0.0
    for i, (batch, frames) in enumerate(CHECK_SHAPES):
        features, lengths = _example(model, batch, frames, seed=i + 1)
        enc = model.eval().encode(features, lengths)
        got = run(features, lengths)  # an Encoding: embedding, projected, gloss logits or None, context
        want = (enc.embedding, enc.projected, enc.gloss_logits, enc.context)
        pairs = [(g, w) for g, w in zip(got, want) if w is not None]
        if any(g is None for g, _ in pairs):
            raise SignlabError("the exported encoder lacks an output PyTorch gives (gloss logits or context)")
        worst = max(worst, _difference(*zip(*pairs), enc.lengths))
    return _checked(worst, atol, "encoder")


def onnx_runner(path: str | Path):
    from signlab.inference.bank import OnnxEncoder

    encoder = OnnxEncoder(path)
    return lambda f, n: encoder(f.numpy(), n.numpy())


class GlossEncoderExport(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        enc = self.model.encode(features, lengths)
        out = self.model.heads(enc)
        return out.ctc_logits, out.lengths, enc.out


class DecoderMemoryExport(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, memory: Tensor) -> list[Tensor]:
        return [t for kv in self.decoder.memory_kv_t(memory) for t in kv]


class DecoderExport(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.decoder = model.decoder

    def forward(self, tokens: Tensor, memory_keep: Tensor, past: list[tuple[Tensor, Tensor]],
                memory_kv_t: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        return self.decoder.forward_with_past(tokens, past, memory_kv_t, memory_keep)


def decoder_names(layers: int, prefix: str) -> list[str]:
    """Per-layer key and value names of a decoder graph's inputs and outputs: PREFIX_k0, PREFIX_v0, ..."""
    return [f"{prefix}_{kv}{i}" for i in range(layers) for kv in "kv"]


def _decoder_example(model: nn.Module, samples: int, rows: int, frames: int, past: int, new: int,
                     seed: int = 0) -> tuple[Tensor, Tensor, list[tuple[Tensor, Tensor]], Tensor]:
    """Tokens, keep-mask, past keys and values and encoder output: ``rows`` rows per sample, the
    last sample's output shorter."""
    g = torch.Generator().manual_seed(seed)
    dec = model.decoder
    memory = torch.randn(samples, frames, dec.d_model, generator=g)
    keep = torch.ones(samples, frames, dtype=torch.bool)
    keep[-1, max(1, frames - 3):] = False
    n, heads = samples * rows, dec.layers[0].self_attn.nhead
    tokens = torch.randint(0, dec.output.out_features, (n, new), generator=g)
    hd = dec.d_model // heads
    before = [(torch.randn(n, heads, hd, past, generator=g), torch.randn(n, heads, past, hd, generator=g)) for _ in dec.layers]
    return tokens, keep, before, memory


def gloss_graphs(folder: Path, model: nn.Module) -> list[Path]:
    """The ONNX files of a gloss bundle in ``folder`` (a CTC-only model has no decoder graphs)."""
    names = ["encoder.onnx"] + (["decoder_memory.onnx", "decoder.onnx"] if model.decoder is not None else [])
    return [folder / n for n in names]


@torch.no_grad()
def export_gloss(model: nn.Module, folder: str | Path) -> list[Path]:
    """A gloss recogniser's graphs into ``folder`` (see the module docstring)."""
    folder = Path(folder)
    model = model.eval()
    paths = gloss_graphs(folder, model)
    _export(GlossEncoderExport(model), _example(model), paths[0], _clip_dims(), ["ctc_logits", "ctc_lengths", "memory"])
    if model.decoder is None:
        return paths
    layers = len(model.decoder.layers)
    samples, frames = torch.export.Dim("samples", min=1), torch.export.Dim("memory_frames", min=2, max=4096)
    tokens, keep, past, memory = _decoder_example(model, 2, 3, 9, past=3, new=2)
    _export(DecoderMemoryExport(model), (memory,), paths[1], {"memory": {0: samples, 1: frames}},
            decoder_names(layers, "memory"))
    rows, before, new = (torch.export.Dim(n, min=1, max=top) for n, top in (("rows", 65536), ("past", 1023), ("new", 1024)))
    _export(DecoderExport(model), (tokens, keep, past, model.decoder.memory_kv_t(memory)), paths[2],
            {"tokens": {0: rows, 1: new}, "memory_keep": {0: samples, 1: frames},
             "past": [({0: rows, 3: before}, {0: rows, 2: before})] * layers,
             "memory_kv_t": [({0: samples, 3: frames}, {0: samples, 2: frames})] * layers},
            ["logits", *decoder_names(layers, "present")], ["tokens", "memory_keep", *decoder_names(layers, "past"),
                                                           *decoder_names(layers, "memory")])
    return paths


@torch.no_grad()
def verify_gloss(model: nn.Module, folder: str | Path, atol: float = 1e-4) -> float:
    """Largest difference of a gloss bundle's graphs (on ONNX Runtime) from PyTorch, over shapes
    none was exported with: batches and lengths, one row and several per sample, no past (teacher
    forcing) and a past of one position or more; raises if above ``atol``."""
    from signlab.inference.onnx import onnx_session

    model = model.eval()
    paths = gloss_graphs(Path(folder), model)
    encoder = onnx_session(paths[0])
    worst = 0.0
    for i, (batch, frames) in enumerate(CHECK_SHAPES):
        features, lengths = _example(model, batch, frames, seed=i + 1)
        enc = model.encode(features, lengths)
        out = model.heads(enc)
        got = encoder.run(None, {"features": features.numpy(), "lengths": lengths.numpy()})
        worst = max(worst, _difference(got, (out.ctc_logits, out.lengths, enc.out), enc.lengths))
    if model.decoder is None:
        return _checked(worst, atol, "encoder")
    memory, decoder = onnx_session(paths[1]), onnx_session(paths[2])
    layers = len(model.decoder.layers)
    for i, (samples, rows, frames, past, new) in enumerate(((1, 1, 5, 0, 4), (3, 4, 17, 1, 1), (2, 2, 30, 6, 1))):
        tokens, keep, before, enc_out = _decoder_example(model, samples, rows, frames, past, new, seed=i + 1)
        memory_kv = model.decoder.memory_kv_t(enc_out)
        got_kv = memory.run(None, {"memory": enc_out.numpy()})
        logits, present = model.decoder.forward_with_past(tokens, before, memory_kv, keep)
        flat = dict(zip(decoder_names(layers, "past"), (t.numpy() for kv in before for t in kv)))
        flat.update(zip(decoder_names(layers, "memory"), (t.numpy() for kv in memory_kv for t in kv)))
        got = decoder.run(None, {"tokens": tokens.numpy(), "memory_keep": keep.numpy(), **flat})
        worst = max(worst, _difference(got_kv, [t for kv in memory_kv for t in kv]),
                    _difference(got, [logits, *(t for kv in present for t in kv)]))
    return _checked(worst, atol, "gloss graphs")


def _difference(got, want, lengths: Tensor | None = None) -> float:
    """Largest absolute difference of matching outputs (only valid frames when ``lengths`` is given)."""
    worst = 0.0
    for g, w in zip(got, want):
        g, w = np.asarray(g, dtype=np.float64), w.double().numpy()
        if g.shape != w.shape:
            raise SignlabError(f"the exported graph gives shape {g.shape} where PyTorch gives {w.shape}")
        if lengths is not None and g.ndim == 3:
            valid = np.arange(g.shape[1])[None] < lengths.numpy()[:, None]
            g, w = g[valid], w[valid]
        worst = max(worst, float(np.abs(g - w).max(initial=0.0)))
    return worst


def _checked(worst: float, atol: float, what: str) -> float:
    if worst > atol:
        raise SignlabError(f"the exported {what} differs from PyTorch by {worst:.2e} (> {atol:.0e})")
    return worst
