"""The TCN + CTC baseline the ASL seed started from, on the same data path as the hybrid model.

Dilated residual 1-D convolutions (receptive field grows as 2^layers) and a CTC head, no
decoder: the configuration whose CTC loss tends to collapse to all-blank outputs.
"""

from __future__ import annotations

from torch import Tensor, nn

from signlab.models.frontend import FrontEnd
from signlab.models.interface import Encoded, RecognizerOutput
from signlab.models.transformer import Middle


class TemporalBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.norm = nn.LayerNorm(channels)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        h = (self.norm(x) * keep).transpose(1, 2)  # padded frames read as zeros
        h = self.mix(self.drop(self.act(self.conv(h))))
        return x + self.drop(h.transpose(1, 2))


class TCNEncoder(nn.Module):
    """``num_layers`` :class:`TemporalBlock` s with dilations 1, 2, 4..., then LayerNorm."""

    def __init__(self, d_model: int, num_layers: int, kernel_size: int, dropout: float):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError("tcn_kernel_size must be odd so the convolution stays centred")
        self.blocks = nn.ModuleList(TemporalBlock(d_model, kernel_size, 2**i, dropout) for i in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor, padding_mask: Tensor, middle: Middle | None = None) -> Tensor:
        keep = (~padding_mask)[..., None].to(x.dtype)
        for i, block in enumerate(self.blocks):
            x = block(x, keep)
            if middle is not None and i == (len(self.blocks) - 1) // 2:
                x = middle(x)
        return self.norm(x)


class TCNCTCModel(nn.Module):
    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        d_model: int = 512,
        num_layers: int = 6,
        kernel_size: int = 5,
        dropout: float = 0.1,
        subsampling: int = 1,
        pose_layout: bool = False,
        hand_shape: bool = False,
    ):
        super().__init__()
        self.subsampling = subsampling
        self.frontend = FrontEnd(input_dim, d_model, dropout, subsampling, pose_layout, hand_shape)
        self.encoder = TCNEncoder(d_model, num_layers, kernel_size, dropout)
        self.ctc_head = nn.Linear(d_model, vocab_size)
        self.decoder = None
        self._register_load_state_dict_pre_hook(_encoder_keys)

    @staticmethod
    def upgrade_keys(state: dict) -> dict:
        """A bundle's weights (``model.safetensors``) saved before the blocks moved into the encoder,
        under their new names; checkpoints go through the same renaming on ``load_state_dict``."""
        state = dict(state)
        _encoder_keys(state, "")
        return state

    def encode(self, features: Tensor, lengths: Tensor) -> Encoded:
        x, lengths, mask = self.frontend(features, lengths)
        return Encoded(self.encoder(x, mask), lengths, mask)

    def heads(self, enc: Encoded, decoder_input: Tensor | None = None) -> RecognizerOutput:
        """CTC logits only: there is no decoder, ``decoder_input`` is ignored."""
        return RecognizerOutput(self.ctc_head(enc.out), enc.lengths, None)

    def forward(self, features: Tensor, lengths: Tensor, decoder_input: Tensor | None = None) -> RecognizerOutput:
        return self.heads(self.encode(features, lengths))


def _encoder_keys(state_dict: dict, prefix: str, *args) -> None:
    """Weights saved before the blocks moved into :class:`TCNEncoder` load under their new names."""
    for key in [k for k in state_dict if k.startswith((prefix + "blocks.", prefix + "norm."))]:
        state_dict[prefix + "encoder." + key[len(prefix):]] = state_dict.pop(key)
