"""A gloss bundle's exported graphs (:mod:`signlab.export`) on ONNX Runtime, behind the same
interface as the PyTorch model (:class:`~signlab.models.interface.GlossModel`), so that every
decoding method runs on them unchanged: the networks run on ONNX Runtime, the search is the one
shared implementation in :mod:`signlab.decoding` (on CPU tensors that share the arrays' memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from signlab.errors import SignlabError
from signlab.models.interface import Encoded, RecognizerOutput


def onnx_session(path: str | Path):
    """An ONNX Runtime session on the CPU provider; a missing or unreadable file is a clear error.

    Its threads do not spin after a run: spinning threads take the cores from the PyTorch search
    between decoder steps and from the other requests of a service."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise SignlabError(f"{path} not found: run `signlab export {path.parent}` first")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a damaged model
        raise SignlabError(f"{path} is not a readable ONNX model ({str(exc).splitlines()[0]}): "
                           f"run `signlab export {path.parent}` again") from None


@dataclass
class OnnxEncoded(Encoded):
    ctc_logits: Tensor = field(kw_only=True)  # (B, T', V): the encoder graph computes the CTC head too


class OnnxGlossModel:
    """``encoder.onnx`` (+ the decoder graphs) of a bundle folder as a gloss recogniser."""

    def __init__(self, folder: str | Path, subsampling: int, has_decoder: bool):
        folder = Path(folder)
        self.subsampling = subsampling
        self.encoder = onnx_session(folder / "encoder.onnx")
        self.decoder = OnnxDecoder(folder) if has_decoder else None

    def encode(self, features: Tensor, lengths: Tensor) -> OnnxEncoded:
        logits, out_lengths, memory = (torch.from_numpy(a) for a in self.encoder.run(
            None, {"features": features.float().numpy(), "lengths": lengths.long().numpy()}))
        mask = torch.arange(memory.size(1))[None] >= out_lengths[:, None]
        return OnnxEncoded(memory, out_lengths, mask, ctc_logits=logits)

    def heads(self, enc: OnnxEncoded, decoder_input: Tensor | None = None) -> RecognizerOutput:
        dec = None if decoder_input is None or self.decoder is None else self.decoder(decoder_input, enc.out, enc.padding_mask)
        return RecognizerOutput(enc.ctc_logits, enc.lengths, dec)


@dataclass
class OnnxDecoderState:
    """What :class:`OnnxDecoder` keeps between steps, as :class:`~signlab.models.transformer.DecoderState`
    does: per sample the cross-attention keys and values, per row the decoded positions' keys and
    values (by graph input name); a reordering of rows is applied by the next step."""

    memory: dict[str, np.ndarray]  # memory_k0, memory_v0, ...: (B, H, hd, S), (B, H, S, hd); memory_keep: (B, S) bool
    past: dict[str, np.ndarray] | None = None  # past_k0, past_v0, ...: (N, H, hd, P), (N, H, P, hd)
    rows: np.ndarray | None = None

    def select(self, rows: Tensor, samples: Tensor | None = None) -> OnnxDecoderState:
        rows, memory = rows.numpy(), self.memory
        if samples is not None:
            memory = {k: v.take(samples.numpy(), axis=0) for k, v in memory.items()}
        return OnnxDecoderState(memory, self.past, rows if self.rows is None else self.rows[rows])


class OnnxDecoder:
    """``decoder_memory.onnx`` + ``decoder.onnx`` with the calls the decoders make of a
    :class:`~signlab.models.transformer.TransformerDecoder`: ``init_state``, ``step`` and teacher
    forcing."""

    def __init__(self, folder: Path):
        self.memory = onnx_session(folder / "decoder_memory.onnx")
        self.graph = onnx_session(folder / "decoder.onnx")
        self.past_names = [i.name for i in self.graph.get_inputs() if i.name.startswith("past_")]
        self.head_shape = next(i for i in self.graph.get_inputs() if i.name == "past_v0").shape[1::2]  # (H, hd)

    def init_state(self, memory: Tensor, memory_padding_mask: Tensor | None) -> OnnxDecoderState:
        outputs = self.memory.run(None, {"memory": memory.float().numpy()})
        state = dict(zip((o.name for o in self.memory.get_outputs()), outputs))
        state["memory_keep"] = np.ones(memory.shape[:2], bool) if memory_padding_mask is None else ~memory_padding_mask.numpy()
        return OnnxDecoderState(state)

    def _run(self, tokens: np.ndarray, state: OnnxDecoderState) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Logits of ``tokens`` after the state's positions, and the past for the next step."""
        if state.past is None:
            (heads, hd), n = self.head_shape, len(tokens)
            past = {name: np.zeros((n, heads, hd, 0) if name[5] == "k" else (n, heads, 0, hd), np.float32)
                    for name in self.past_names}
        else:
            past = state.past if state.rows is None else {k: v.take(state.rows, axis=0) for k, v in state.past.items()}
        logits, *present = self.graph.run(None, {"tokens": tokens, **state.memory, **past})
        return logits, dict(zip(self.past_names, present))

    def step(self, tokens: Tensor, state: OnnxDecoderState) -> tuple[Tensor, OnnxDecoderState]:
        """(N,) newest tokens -> (N, V) logits for the next position, and the state after it."""
        logits, past = self._run(tokens.numpy()[:, None], state)
        return torch.from_numpy(logits[:, -1]), OnnxDecoderState(state.memory, past)

    def __call__(self, tokens: Tensor, memory: Tensor, memory_padding_mask: Tensor | None = None) -> Tensor:
        """Teacher forcing: (N, L) tokens -> (N, L, V) logits."""
        return torch.from_numpy(self._run(tokens.numpy(), self.init_state(memory, memory_padding_mask))[0])
