import numpy as np
import pytest
import torch
import torch.nn.functional as F

from signlab import pose
from signlab.config import ModelConfig
from signlab.data.stats import FeatureStats
from signlab.losses import JointCTCAttentionLoss, guided_attention_loss
from signlab.models import (
    HybridCTCAttentionModel,
    TCNCTCModel,
    build_recognizer,
    subsampled_lengths,
)
from signlab.models.frontend import ConvSubsampling, FeatureNormalizer, HandShape
from signlab.vocab import BLANK, SOS


def small_hybrid(dim=16, vocab=12, sub=1, **options):
    return HybridCTCAttentionModel(dim, vocab, d_model=32, nhead=4, num_encoder_layers=2, num_decoder_layers=2,
                                   dim_feedforward=64, dropout=0.1, subsampling=sub, **options).eval()


@pytest.mark.parametrize("dim", [1024, 540])
def test_hybrid_shapes_for_i3d_and_pose_inputs(dim):
    model = small_hybrid(dim, vocab=30, sub=2)
    x, lengths = torch.randn(3, 41, dim), torch.tensor([41, 30, 7])
    out = model(x, lengths, torch.full((3, 5), SOS))
    assert out.ctc_logits.shape == (3, 21, 30) and out.decoder_logits.shape == (3, 5, 30)
    assert out.lengths.tolist() == [21, 15, 4]


def test_default_architecture_matches_the_seed():
    m = HybridCTCAttentionModel(1024, 100)
    assert len(m.encoder.layers) == 6 and len(m.decoder.layers) == 3 and m.encoder.norm.normalized_shape == (512,)
    assert m.encoder.layers[0].attn.nhead == 8


@pytest.mark.parametrize("make", [lambda: small_hybrid(sub=1), lambda: small_hybrid(sub=2), lambda: small_hybrid(sub=4),
                                  lambda: small_hybrid(sub=2, encoder="bilstm"), lambda: small_hybrid(encoder="tcn"),
                                  lambda: small_hybrid(encoder="bilstm", self_conditioning=True),
                                  lambda: small_hybrid(sub=2, self_conditioning=True),
                                  lambda: TCNCTCModel(16, 12, d_model=32, num_layers=3, subsampling=2).eval()])
def test_a_clip_gives_the_same_output_alone_or_padded_in_a_batch(make):
    torch.manual_seed(0)
    model = make()
    clip = torch.randn(1, 23, 16)
    other = torch.randn(1, 40, 16)
    batch = torch.cat([torch.cat([clip, torch.randn(1, 17, 16) * 50], 1), other])  # padding holds garbage
    with torch.no_grad():
        alone = model(clip, torch.tensor([23]), torch.tensor([[SOS, 4, 5]]))
        padded = model(batch, torch.tensor([23, 40]), torch.tensor([[SOS, 4, 5], [SOS, 6, 7]]))
    n = alone.lengths[0]
    torch.testing.assert_close(padded.ctc_logits[0, :n], alone.ctc_logits[0], atol=1e-5, rtol=1e-5)
    if alone.decoder_logits is not None:
        torch.testing.assert_close(padded.decoder_logits[:1], alone.decoder_logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_subsampled_lengths_match_the_convolutions(factor):
    sub = ConvSubsampling(8, factor)
    for t in (1, 2, 5, 16, 17):
        y, lengths = sub(torch.randn(1, t, 8), torch.tensor([t]))
        assert y.shape[1] == lengths.item() == subsampled_lengths(t, factor)


def test_incremental_decoding_equals_the_full_forward_pass():
    torch.manual_seed(0)
    model = small_hybrid()
    enc = model.encode(torch.randn(2, 9, 16), torch.tensor([9, 6]))
    tokens = torch.tensor([[SOS, 5, 6, 7], [SOS, 8, 9, 10]])
    full = model.decoder(tokens, enc.out, enc.padding_mask)
    state = model.decoder.init_state(enc.out, enc.padding_mask)
    for t in range(tokens.size(1)):
        logits, state = model.decoder.step(tokens[:, t], state)
        torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)


def test_the_pure_decoder_pass_the_export_traces_equals_teacher_forcing_and_steps():
    torch.manual_seed(0)
    model = small_hybrid()
    enc = model.encode(torch.randn(2, 9, 16), torch.tensor([9, 6]))
    tokens = torch.tensor([[SOS, 5, 6, 7], [SOS, 8, 9, 10], [SOS, 5, 9, 9], [SOS, 6, 6, 5]])  # 2 rows a sample
    full = model.decoder(tokens, enc.out, enc.padding_mask)
    kv, keep = model.decoder.memory_kv_t(enc.out), ~enc.padding_mask
    heads, hd = 4, 8
    past = [(torch.zeros(4, heads, hd, 0), torch.zeros(4, heads, 0, hd)) for _ in model.decoder.layers]
    whole, _ = model.decoder.forward_with_past(tokens, past, kv, keep)
    torch.testing.assert_close(whole, full, atol=1e-5, rtol=1e-5)
    for t in range(tokens.size(1)):  # one position at a time, the keys and values carried along
        logits, past = model.decoder.forward_with_past(tokens[:, t : t + 1], past, kv, keep)
        torch.testing.assert_close(logits[:, 0], full[:, t], atol=1e-5, rtol=1e-5)
    assert past[0][0].shape == (4, heads, hd, 4) and past[0][1].shape == (4, heads, 4, hd)


def test_the_normalizer_zeroes_exactly_the_values_of_missing_landmarks(rng):
    x = rng.normal(size=(3, 540)).astype(np.float32)
    x[rng.random((3, 540)) < 0.5] = 0  # coordinates zero here and there, whole landmarks too
    x[1, pose.PART_SLICES["right_hand"]] = 0
    norm = FeatureNormalizer(540, pose_layout=True)
    norm.set_stats(np.full(540, -1.0), np.ones(540))  # x + 1: zero only where masked
    assert np.array_equal(norm(torch.from_numpy(x)).numpy() != 0, pose.value_mask(x))


def test_joint_loss_is_the_weighted_sum_and_trains():
    torch.manual_seed(0)
    model = small_hybrid().train()
    batch = {"features": torch.randn(2, 12, 16), "lengths": torch.tensor([12, 9]),
             "ctc_targets": torch.tensor([[5, 6, 7], [8, 9, 0]]), "target_lengths": torch.tensor([3, 2]),
             "decoder_input": torch.tensor([[SOS, 5, 6, 7], [SOS, 8, 9, 0]]),
             "decoder_target": torch.tensor([[5, 6, 7, 4], [8, 9, 4, 0]])}
    loss_fn = JointCTCAttentionLoss(0.3, 0.7)
    out = model(batch["features"], batch["lengths"], batch["decoder_input"])
    losses = loss_fn(out, batch)
    torch.testing.assert_close(losses["loss"], 0.3 * losses["ctc"] + 0.7 * losses["ce"])
    ce = F.cross_entropy(out.decoder_logits.reshape(-1, 12), batch["decoder_target"].reshape(-1), ignore_index=0)
    torch.testing.assert_close(losses["ce"], ce)
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_self_conditioned_ctc_reads_the_middle_layer_and_adds_it_to_the_loss():
    torch.manual_seed(0)
    batch = {"features": torch.randn(2, 12, 16), "lengths": torch.tensor([12, 9]),
             "ctc_targets": torch.tensor([[5, 6, 7], [8, 9, 0]]), "target_lengths": torch.tensor([3, 2]),
             "decoder_input": torch.tensor([[SOS, 5, 6, 7], [SOS, 8, 9, 0]]),
             "decoder_target": torch.tensor([[5, 6, 7, 4], [8, 9, 4, 0]])}
    for encoder in ("transformer", "bilstm", "tcn"):
        model = small_hybrid(encoder=encoder, self_conditioning=True).train()
        out = model(batch["features"], batch["lengths"], batch["decoder_input"])
        assert out.middle_ctc_logits.shape == out.ctc_logits.shape
        full = JointCTCAttentionLoss(1.0, 0.0, middle_weight=0.5)(out, batch)["ctc"]
        last = JointCTCAttentionLoss(1.0, 0.0)(out, batch)["ctc"]
        middle = JointCTCAttentionLoss(1.0, 0.0)(type(out)(out.middle_ctc_logits, out.lengths, None), batch)["ctc"]
        torch.testing.assert_close(full, 0.5 * last + 0.5 * middle)
        full.backward()
        assert model.condition.weight.grad is not None and model.condition.weight.grad.abs().sum() > 0
    assert small_hybrid().condition is None  # off unless asked for


def test_old_tcn_weights_load_under_the_shared_encoder():
    model = TCNCTCModel(16, 12, d_model=32, num_layers=2)
    old = {k.replace("encoder.", ""): v for k, v in model.state_dict().items()}  # as saved before the encoder module
    assert any(k.startswith("blocks.") for k in old)
    fresh = TCNCTCModel(16, 12, d_model=32, num_layers=2)
    fresh.load_state_dict(old)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    assert set(TCNCTCModel.upgrade_keys(old)) == set(model.state_dict())  # a bundle's model.safetensors too


def test_the_attention_guide_counts_the_mass_between_each_glosses_neighbours():
    # CTC fires gloss 0 at frame 1, gloss 1 at frames 4-5, gloss 2 at frame 8 of 10 (9 valid)
    b = BLANK
    logits = 10 * F.one_hot(torch.tensor([[b, 5, b, b, 6, 6, b, b, 7, b]]), 12).float()
    targets, lengths = torch.tensor([[5, 6, 7]]), torch.tensor([9])
    attention = torch.zeros(1, 4, 10)
    attention[0, 0, 3] = 1.0  # gloss 0 may use frames 0-3: all of it inside
    attention[0, 1, [2, 9]] = 0.5  # gloss 1 may use 2-7: half
    attention[0, 2, [6, 1]] = torch.tensor([0.25, 0.75])  # gloss 2 may use 6-8 (the clip's last valid frame): a quarter
    attention[0, 3, 0] = 1.0  # <eos> is not guided
    got = guided_attention_loss(attention, logits, lengths, targets, torch.tensor([3]))
    torch.testing.assert_close(got, -torch.tensor([1.0, 0.5, 0.25]).log().mean())


def test_the_decoder_returns_its_cross_attention_and_the_guide_trains_it():
    torch.manual_seed(0)
    model = small_hybrid().eval()
    x, n, tokens = torch.randn(2, 12, 16), torch.tensor([12, 9]), torch.tensor([[SOS, 5, 6, 7], [SOS, 8, 9, 0]])
    plain, guided = model(x, n, tokens), model.heads(model.encode(x, n), tokens, need_attention=True)
    torch.testing.assert_close(guided.decoder_logits, plain.decoder_logits)
    assert plain.attention is None and guided.attention.shape == (2, 4, guided.ctc_logits.size(1))
    torch.testing.assert_close(guided.attention.sum(-1), torch.ones(2, 4))
    assert guided.attention[1, :, 9:].abs().max() == 0  # padding frames get none
    batch = {"ctc_targets": torch.tensor([[5, 6, 7], [8, 9, 0]]), "target_lengths": torch.tensor([3, 2]),
             "decoder_target": torch.tensor([[5, 6, 7, 4], [8, 9, 4, 0]])}
    losses = JointCTCAttentionLoss(0.3, 0.7, 0.0, guide_weight=0.5)(guided, batch)
    torch.testing.assert_close(losses["loss"], 0.3 * losses["ctc"] + 0.7 * losses["ce"] + 0.5 * losses["guide"])
    assert "guide" not in JointCTCAttentionLoss(0.3, 0.7, 0.0, guide_weight=0.5)(plain, batch)
    losses["guide"].backward()  # the guide moves the decoder's queries, not the keys it reads the encoder with
    cross = model.decoder.layers[-1].cross_attn
    assert cross.q.weight.grad.abs().sum() > 0 and cross.kv.weight.grad is None


def test_build_recognizer_from_config():
    assert isinstance(build_recognizer(ModelConfig(type="tcn", d_model=32, num_encoder_layers=2), 540, 20), TCNCTCModel)
    assert isinstance(build_recognizer(ModelConfig(d_model=32, nhead=4), 540, 20), HybridCTCAttentionModel)
    with pytest.raises(ValueError, match="odd"):
        TCNCTCModel(8, 10, kernel_size=4)


def test_normalizer_standardises_and_keeps_undetected_pose_parts_and_padding_zero():
    norm = FeatureNormalizer(540, pose_layout=True)
    stats = FeatureStats(np.full(540, 0.5, np.float32), np.full(540, 2.0, np.float32))
    norm.set_stats(stats.mean, stats.std)
    x = torch.ones(2, 3, 540)
    x[0, 1, pose.PART_SLICES["left_hand"]] = 0  # a missed hand
    x[1, 2] = 0  # padding
    y = norm(x)
    assert torch.allclose(y[0, 0], torch.full((540,), 0.25))
    assert (y[0, 1, pose.PART_SLICES["left_hand"]] == 0).all() and (y[0, 1, pose.PART_SLICES["face"]] == 0.25).all()
    assert (y[1, 2] == 0).all()
    i3d = FeatureNormalizer(1024)
    i3d.set_stats(np.ones(1024), np.full(1024, 2.0))
    assert torch.allclose(i3d(torch.zeros(1, 1, 1024)), torch.full((1, 1, 1024), -0.5))
    assert "frontend.normalize.mean" not in small_hybrid().state_dict()  # statistics live in stats.npz


def test_build_recognizer_sets_the_statistics():
    stats = FeatureStats(np.arange(16, dtype=np.float32), np.full(16, 3.0, np.float32))
    m = build_recognizer(ModelConfig(d_model=32, nhead=4, num_encoder_layers=1, num_decoder_layers=1), 16, 10, stats)
    assert torch.equal(m.frontend.normalize.mean, torch.arange(16.0))


def test_hand_shape_is_the_hand_relative_to_its_wrist_in_palm_lengths():
    rng = np.random.default_rng(0)
    frame = torch.from_numpy(rng.normal(0, 0.3, (1, 1, 540)).astype(np.float32))
    moved = frame.clone()
    hand = pose.PART_SLICES["right_hand"]
    points = moved[..., hand].unflatten(-1, (21, 3))
    moved[..., hand] = (points * 2.5 + torch.tensor([0.4, -0.2, 0.1])).flatten(-2)  # the arm moves, the hand is bigger
    shape, same = HandShape()(frame), HandShape()(moved)
    assert shape.shape == (1, 1, HandShape.dim)
    torch.testing.assert_close(shape, same, atol=1e-5, rtol=1e-5)  # the same handshape
    palm = shape[0, 0].unflatten(-1, (2, 21, 3))
    assert (palm[:, 0] == 0).all() and torch.allclose(palm[:, 9].norm(dim=-1), torch.ones(2))  # wrist at 0, palm length 1
    frame[..., pose.PART_SLICES["left_hand"]] = 0  # a missed hand stays zero
    assert (HandShape()(frame)[0, 0, : HandShape.dim // 2] == 0).all()
    right = pose.PART_SLICES["right_hand"].start
    frame[..., right + 3 * 4 : right + 3 * 5] = 0  # a missing fingertip of the right hand: zero, the rest kept
    out = HandShape()(frame)[0, 0, HandShape.dim // 2 :].unflatten(-1, (21, 3))
    assert (out[4] == 0).all() and torch.allclose(out[8], palm[1, 8])


def test_hand_shape_input_only_for_pose_features():
    with_hands = build_recognizer(ModelConfig(d_model=32, nhead=4), 540, 20, pose_layout=True)
    assert with_hands.frontend.hand_shape is not None
    assert with_hands.frontend.project[0].in_features == 540 + HandShape.dim
    assert build_recognizer(ModelConfig(d_model=32, nhead=4), 1024, 20).frontend.hand_shape is None  # I3D: no hands
    off = build_recognizer(ModelConfig(d_model=32, nhead=4, hand_shape=False), 540, 20, pose_layout=True)
    assert off.frontend.hand_shape is None and off.frontend.project[0].in_features == 540
