import csv
import json
import logging
import struct
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from signlab import pose
from signlab.config import ExtractConfig
from signlab.data.features import load_features
from signlab.data.pose_files import BODY_NAMES, read_pose_file
from signlab.errors import SignlabError
from signlab.extract.i3d import (
    I3D,
    I3DExtractor,
    load_i3d_weights,
    window_starts,
    window_times,
)
from signlab.extract.pipeline import video_features
from signlab.extract.runner import ExtractionJob, plan, run_extraction
from signlab.extract.video import VideoError, VideoOptions, probe, read_video
from signlab.kinds import HOLISTIC
from tests.conftest import REAL_DATA, needs_real_data, run_cli


def make_video(path, frames=30, fps=30, size=(64, 48), rotate=False, faststart=False, title=None):
    """A white square moving right across a black frame (mpeg4 in mp4); ``faststart`` puts the
    index first, as streaming sites do, so a file cut short still opens."""
    w, h = size
    c = av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {})
    if title:
        c.metadata["title"] = title
    s = c.add_stream("mpeg4", rate=fps)
    s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    for i in range(frames):
        img = np.zeros((h, w, 3), np.uint8)
        x = (i * 3) % (w - 10)
        img[h // 2 - 5 : h // 2 + 5, x : x + 10] = 255
        img[0:8, 0:8] = (255, 0, 0)  # a red corner marker, to check orientation
        for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            c.mux(packet)
    for packet in s.encode():
        c.mux(packet)
    c.close()
    if rotate:  # the QuickTime display matrix of a phone held upright: play rotated 90 degrees clockwise
        data = bytearray(path.read_bytes())
        at = data.find(b"tkhd")
        data[at + 44 : at + 80] = struct.pack(">9i", 0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30)
        path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    make_video(d / "a.mp4", frames=30, fps=30)
    (d / "sub").mkdir()
    make_video(d / "sub" / "b.mp4", frames=12, fps=24, size=(96, 64))
    good = (d / "a.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(good[: len(good) // 3])
    (d / "notes.txt").write_text("not a video")
    return d


def test_decoding_gives_upright_rgb_frames(videos):
    info = probe(videos / "a.mp4")
    assert (info.fps, info.width, info.height) == (30.0, 64, 48)
    v = read_video(videos / "a.mp4")
    assert v.shape == (30, 48, 64, 3) and v.dtype == np.uint8
    squares = [np.argwhere(f[20:28, :, 0] > 128)[:, 1].mean() for f in v[:5]]
    assert np.all(np.diff(squares) > 0)  # the square moves right, frames are in order


def test_rotation_metadata_is_honoured(tmp_path):
    v = read_video(make_video(tmp_path / "r.mp4", frames=3, rotate=True))
    assert v.shape[1:3] == (64, 48)  # portrait
    marker = np.argwhere((v[0, :, :, 0] > 150) & (v[0, :, :, 1] < 100)).mean(0)
    assert marker[0] < 10 and marker[1] > 38  # the top-left corner went to the top right


@pytest.mark.parametrize("fps, expected", [(15, 15), (30, 30), (60, 60), (10, 10)])
def test_fps_resampling(videos, fps, expected):
    assert len(read_video(videos / "a.mp4", VideoOptions(fps=fps))) == expected  # 1 s of video


def test_ranges_resize_and_crop(videos):
    assert len(read_video(videos / "a.mp4", VideoOptions(start=5, end=15))) == 10
    assert len(read_video(videos / "a.mp4", VideoOptions(start_time=0.5))) == 15
    v = read_video(videos / "sub" / "b.mp4", VideoOptions(size=32, crop=32))
    assert v.shape == (12, 32, 32, 3)
    assert read_video(videos / "sub" / "b.mp4", VideoOptions(size=32)).shape[1:3] == (32, 48)
    with pytest.raises(VideoError, match="no frames in the requested range") as err:
        read_video(videos / "a.mp4", VideoOptions(start=100))
    assert err.value.kind == "empty"


@pytest.mark.parametrize("name, kind", [("missing.mp4", "missing"), ("notes.txt", "unreadable")])
def test_bad_files_are_named(videos, name, kind):
    with pytest.raises(VideoError) as err:
        read_video(videos / name)
    assert err.value.kind == kind and name in str(err.value)


def test_truncated_file_is_an_error_not_a_short_clip_or_it_is_caught(videos):
    try:
        frames = read_video(videos / "truncated.mp4")
    except VideoError as err:
        assert err.kind in ("corrupt", "unreadable", "empty")
    else:
        assert len(frames) < 30  # FFmpeg may decode what survives; it must not invent frames


@pytest.mark.parametrize("n, stack, step, expected", [
    (1, 16, 4, [0]), (16, 16, 4, [0]), (17, 16, 4, [0, 1]), (40, 16, 4, [0, 4, 8, 12, 16, 20, 24]),
    (42, 16, 4, [0, 4, 8, 12, 16, 20, 24, 26]), (100, 64, 32, [0, 32, 36]),
])
def test_window_counts(n, stack, step, expected):
    assert window_starts(n, stack, step) == expected
    assert len(window_times(n, stack, step, 25.0)) == len(expected)


def test_i3d_features_have_the_right_shape_with_random_weights(videos):
    frames = read_video(videos / "a.mp4", VideoOptions(size=64, crop=64))
    extractor = I3DExtractor(None, stack_size=8, step_size=4, batch_size=3)
    f = extractor.extract(frames)
    assert f.shape == (len(window_starts(30, 8, 4)), 1024) and f.dtype == np.float32 and np.isfinite(f).all()
    assert extractor.extract(frames[:3]).shape == (1, 1024)  # shorter than a window: padded, one vector


def test_i3d_checkpoint_round_trip_in_the_public_layout(tmp_path):
    torch.manual_seed(0)
    source = I3D()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    public = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}  # as in 2018
    assert "Conv3d_1a_7x7.conv3d.weight" in public and "Mixed_5c.b3b.bn.running_var" in public and "logits.conv3d.bias" in public
    torch.save(public, tmp_path / "rgb_imagenet.pt")
    loaded = I3D()
    load_i3d_weights(loaded, tmp_path / "rgb_imagenet.pt")
    for k, v in public.items():
        assert torch.equal(loaded.state_dict()[k], v), k
    broken = {k.replace("Mixed_4b.b1a", "Mixed_4b.branch1"): v for k, v in public.items()}
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(SignlabError, match=r"missing \(e.g. \['Mixed_4b.b1a"):
        load_i3d_weights(I3D(), tmp_path / "broken.pt")
    torch.save({"model": I3D}, tmp_path / "pickled.pt")  # code, not weights: refused by weights_only
    with pytest.raises(SignlabError, match="cannot read I3D weights"):
        load_i3d_weights(I3D(), tmp_path / "pickled.pt")
    with pytest.raises(SignlabError, match="not found"):
        load_i3d_weights(I3D(), tmp_path / "nope.pt")


def test_plan_mirrors_folders_shards_and_rejects_collisions(videos, tmp_path):
    pairs = plan([videos], tmp_path)
    assert {o.relative_to(tmp_path).as_posix() for _, o in pairs} == {"a.npy", "sub/b.npy", "truncated.npy"}
    halves = [plan([videos], tmp_path, (i, 2)) for i in range(2)]
    assert sorted(sum(halves, [])) == sorted(pairs) and not set(halves[0]) & set(halves[1])
    other = tmp_path / "other"
    other.mkdir()
    make_video(other / "a.mp4", frames=2)
    with pytest.raises(SignlabError, match="would both be written"):
        plan([videos / "a.mp4", other / "a.mp4"], tmp_path / "out")


def test_video_without_a_signer_fails_extraction_instead_of_giving_zeros(videos, tmp_path):
    outcomes = run_extraction([videos], ExtractionJob("pose", tmp_path / "out", VideoOptions(fps=15)))
    status = {o.video.name: (o.status, o.reason) for o in outcomes}
    assert status["a.mp4"] == ("failed", "no_signer") and status["b.mp4"] == ("failed", "no_signer")
    assert "no body in any of the 15 frames" in next(o.message for o in outcomes if o.video.name == "a.mp4")
    assert not (tmp_path / "out" / "a.npy").exists() and not list((tmp_path / "out").rglob("*.partial"))
    failures = {Path(r["video_file"]).name: r["reason"] for r in csv.DictReader((tmp_path / "out" / "failures.csv").open())}
    assert failures["a.mp4"] == "no_signer" and failures["truncated.mp4"] in ("unreadable", "corrupt")


@needs_real_data()
def test_pose_extraction_writes_features_masks_and_a_manifest(tmp_path):
    clip = REAL_DATA / "wlasl_01377.mp4"
    outcomes = run_extraction([clip], ExtractionJob("pose", tmp_path / "out", VideoOptions(fps=15)))
    assert [(o.status, o.reason) for o in outcomes] == [("done", "")], outcomes[0].message
    features = np.load(tmp_path / "out" / "wlasl_01377.npy")
    assert features.shape[1] == 540 and np.load(tmp_path / "out" / "wlasl_01377.mask.npy")[:, 0].any()
    rows = {r["id"]: r for r in csv.DictReader((tmp_path / "out" / "manifest.csv").open())}
    assert {"video_file", "feature_path", "num_frames", "motion_mean", "motion_p95", "mean_visibility"} <= set(rows["wlasl_01377"])
    again = run_extraction([clip], ExtractionJob("pose", tmp_path / "out", VideoOptions(fps=15)))
    assert [o.status for o in again] == ["skipped"]


def test_truncated_video_is_reported_not_read_as_a_shorter_clip(tmp_path, caplog):
    whole = make_video(tmp_path / "whole.mp4", frames=60, faststart=True)
    data = whole.read_bytes()
    start = data.find(b"mdat")
    assert 0 < data.find(b"moov") < start  # the index comes first, so a cut file still opens
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: start + (len(data) - start) * 3 // 10])  # 30% of the frames' bytes
    with pytest.raises(VideoError, match=r"truncated \(\d+ of 60 frames\)") as err:
        read_video(cut)
    assert err.value.kind == "truncated"
    from signlab.extract.video import iter_frames

    with caplog.at_level(logging.WARNING):
        frames = list(iter_frames(cut, truncated="warn"))
    assert 0 < len(frames) < 60 and f"decoded {len(frames)} of the 60 frames" in caplog.text
    assert len(read_video(whole)) == 60  # a whole file is not flagged
    assert len(read_video(whole, VideoOptions(start=10, end=20))) == 10  # nor a range of it
    outcomes = run_extraction([cut], ExtractionJob("i3d", tmp_path / "i3d", VideoOptions(size=32, crop=32),
                                                   random_weights=True, stack_size=8, step_size=8))
    assert (outcomes[0].status, outcomes[0].reason) == ("failed", "truncated")
    assert outcomes[0].message.startswith("truncated (") and not (tmp_path / "i3d" / "cut.npy").exists()


def test_empty_file_is_empty_and_tags_that_are_not_utf8_do_not_stop_decoding(tmp_path):
    (tmp_path / "zero.mp4").write_bytes(b"")
    with pytest.raises(VideoError, match="is empty \\(0 bytes\\)") as err:
        read_video(tmp_path / "zero.mp4")
    assert err.value.kind == "empty"
    tagged = make_video(tmp_path / "tagged.mp4", frames=12, title="QQQQQQQQ")
    data = tagged.read_bytes()
    assert data.count(b"QQQQQQQQ") == 1
    tagged.write_bytes(data.replace(b"QQQQQQQQ", b"\xcf\xcf\xcf\xcf\xcf\xcf\xcf\xcf"))  # Latin-1 bytes, as in a WLASL clip
    with pytest.raises(UnicodeDecodeError):
        av.open(str(tagged)).close()  # what PyAV's default strict metadata decoding does
    assert len(read_video(tagged)) == 12 and probe(tagged).fps == 30


def test_a_truncated_or_foreign_file_is_reported_and_the_rest_done(videos, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 40)  # a header and nothing else
    outcomes = run_extraction([videos / "a.mp4", junk, videos / "notes.txt"],
                              ExtractionJob("i3d", tmp_path / "i3d", VideoOptions(size=32, crop=32), random_weights=True,
                                            stack_size=8, step_size=8))
    status = {o.video.name: o for o in outcomes}
    assert status["a.mp4"].status == "done" and np.load(tmp_path / "i3d" / "a.npy").shape == (4, 1024)
    assert status["junk.mp4"].status == "failed" and status["junk.mp4"].reason in ("unreadable", "corrupt", "empty")
    assert status["notes.txt"].status == "failed" and status["notes.txt"].reason == "unreadable"
    failures = list(csv.DictReader((tmp_path / "i3d" / "failures.csv").open()))
    assert {f["reason"] for f in failures} <= {"unreadable", "corrupt", "empty"} and len(failures) == 2
    assert not (tmp_path / "i3d" / "junk.npy").exists()


def test_i3d_without_weights_is_refused(videos, tmp_path):
    with pytest.raises(SignlabError, match="I3D needs weights"):
        run_extraction([videos], ExtractionJob("i3d", tmp_path))


def test_pose_files_read_by_landmark_name(tmp_path):
    mp = pytest.importorskip("mediapipe")
    assert tuple(mp.solutions.holistic.PoseLandmark._member_names_) == BODY_NAMES
    from signlab.data.pose_files import write_pose_file
    from signlab.extract.holistic import HolisticLandmarks

    rng = np.random.default_rng(0)
    lm = HolisticLandmarks(rng.random((4, 33, 4), dtype=np.float32), rng.random((4, 468, 3), dtype=np.float32),
                           rng.random((4, 21, 3), dtype=np.float32), np.zeros((4, 21, 3), np.float32),
                           rng.random((4, 33, 4), dtype=np.float32))
    write_pose_file(tmp_path / "x.pose", lm, 25, 640, 480)
    back = read_pose_file(tmp_path / "x.pose")
    np.testing.assert_allclose(back, lm.features(), atol=1e-4)
    assert load_features(tmp_path / "x.pose", 540).shape == (4, 540)  # manifests may point at .pose files
    (tmp_path / "bad.pose").write_bytes(b"nonsense")
    with pytest.raises(SignlabError, match="not a readable .pose file"):
        read_pose_file(tmp_path / "bad.pose")


@needs_real_data()
def test_real_pose_files_load():
    for name in ("ase_A.pose", "sgg_kinder.pose"):  # a full and a reduced Holistic file
        x = read_pose_file(REAL_DATA / name)
        assert x.shape[1] == 540 and np.isfinite(x).all() and pose.part_mask(x)[:, 0].all()
        assert pose.normalize_body(x) is not None


@pytest.mark.slow
@needs_real_data()
def test_pose_extraction_finds_the_signer_in_every_how2sign_frame(tmp_path):
    clips = sorted(REAL_DATA.glob("*rgb_front.mp4"))
    assert len(clips) == 2
    outcomes = run_extraction(clips, ExtractionJob("pose", tmp_path, VideoOptions(fps=25)))
    for o in outcomes:
        assert o.status == "done", o.message
        mask = np.load(tmp_path / (o.output.stem + ".mask.npy"))
        assert mask[:, 0].all(), f"{o.video.name}: body missing in {(~mask[:, 0]).sum()} frames"
        assert mask[:, 1:3].any(axis=1).mean() > 0.8  # hands seen in most frames


@pytest.mark.slow
@needs_real_data()
def test_i3d_runs_on_every_real_clip(tmp_path):
    clips = sorted(REAL_DATA.glob("*.mp4"))
    outcomes = run_extraction(clips, ExtractionJob("i3d", tmp_path, VideoOptions(fps=12.5, size=64, crop=64),
                                                   random_weights=True, stack_size=8, step_size=8))
    assert [o.status for o in outcomes] == ["done"] * len(clips), [o.message for o in outcomes]
    for o in outcomes:
        f = np.load(o.output)
        assert f.shape[1] == 1024 and len(f) >= 1 and np.isfinite(f).all()


@pytest.mark.slow
@needs_real_data()
def test_two_workers_give_the_same_features_as_one(tmp_path):
    clips = [REAL_DATA / "wlasl_01377.mp4", REAL_DATA / "wlasl_65076.mp4"]
    one = run_extraction(clips, ExtractionJob("pose", tmp_path / "one", VideoOptions(fps=10)))
    two = run_extraction(clips, ExtractionJob("pose", tmp_path / "two", VideoOptions(fps=10), workers=2))
    assert [o.status for o in one] == [o.status for o in two] == ["done", "done"]
    for clip in clips:
        name = clip.with_suffix(".npy").name
        np.testing.assert_array_equal(np.load(tmp_path / "one" / name), np.load(tmp_path / "two" / name))


def test_cli_extract_and_recognize(videos, tmp_path, tiny_corpus, tiny_config):
    r = run_cli("extract", "pose", str(videos / "a.mp4"), "--out", str(tmp_path / "p"), "--fps", "10")
    assert r.returncode == 1 and "no_signer" in r.stdout and not (tmp_path / "p" / "a.npy").exists()
    assert "W0000" not in r.stderr and "INFO: Created TensorFlow Lite" not in r.stderr, r.stderr  # MediaPipe kept quiet
    r = run_cli("extract", "i3d", str(videos / "a.mp4"), "--out", str(tmp_path / "q"))
    assert r.returncode == 2 and "I3D needs weights" in r.stderr
    r = run_cli("extract", "pose", str(videos / "notes.txt"), str(videos / "a.mp4"), "--out", str(tmp_path / "p"))
    assert r.returncode == 1 and "unreadable" in r.stdout  # the run finishes; the exit status says one failed

    from signlab.training.run import train

    run = train([tiny_corpus], tiny_config("training.epochs=1", "extract.fps=10"), tmp_path / "run", progress=False)
    r = run_cli("recognize", str(videos / "notes.txt"), "--model", str(run))
    assert r.returncode == 2 and "notes.txt" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("recognize", str(videos / "a.mp4"), "--model", str(run))
    assert r.returncode == 2 and "a.mp4: no frame shows the signer's shoulders" in r.stderr  # nobody in view
    vf = video_features(videos / "a.mp4", HOLISTIC, ExtractConfig(fps=10))
    assert vf.features.shape == (10, 540) and np.allclose(vf.times, np.arange(10) / 10)
    if REAL_DATA.is_dir():  # a real signer
        out = tmp_path / "not_yet_there" / "r.json"  # its folder is made before the work, not failed after it
        r = run_cli("recognize", str(REAL_DATA / "wlasl_01377.mp4"), "--model", str(run), "--json", str(out))
        assert r.returncode == 0, r.stderr
        result = json.loads(out.read_text())
        assert result["fps"] == 10 and result["frames"] == 8 and isinstance(result["glosses"], list)
        assert {"extract", "model"} <= set(result["timing_s"]) and f"glosses ({result['decoding']})" in r.stdout


def test_i3d_views_written_and_drawn_one_a_clip_each_epoch(videos, tmp_path):
    from signlab.data.dataset import FeatureViews, GlossDataset
    from signlab.data.features import Preprocessor, scan, view_path
    from signlab.data.manifest import Sample
    from signlab.extract.runner import ExtractionJob, run_extraction
    from signlab.kinds import I3D
    from signlab.vocab import Vocabulary

    job = ExtractionJob("i3d", tmp_path / "f", VideoOptions(size=64, crop=64), random_weights=True, stack_size=8,
                        step_size=4, views=3)
    run_extraction([videos / "a.mp4"], job)
    clean = tmp_path / "f" / "a.npy"
    views = [np.load(clean)] + [np.load(view_path(clean, k)) for k in (1, 2)]
    assert all(v.shape[1] == 1024 for v in views) and not np.allclose(views[0][:3], views[1][:3])
    manifest = (tmp_path / "f" / "manifest.csv").read_text()
    assert "views" in manifest.splitlines()[0] and ",3" in manifest
    sample = Sample("a", "train", clean, ("A",), extra={"views": "3"})
    prep = Preprocessor(I3D)
    ds = FeatureViews(GlossDataset(scan([sample], prep), prep, Vocabulary.build([["A"]]), 150), seed=0)
    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        x = ds[0]["features"].numpy()
        seen |= {k for k, v in enumerate(views) if v.shape == x.shape and np.allclose(v, x)}
    assert seen == {0, 1, 2}
    view_path(clean, 2).write_bytes(b"broken")
    for epoch in range(12):  # a broken view gives the clean features, never an error
        ds.set_epoch(epoch)
        assert ds[0]["features"].shape[1] == 1024
    with pytest.raises(SignlabError, match="--views is for I3D features"):
        run_extraction([videos / "a.mp4"], ExtractionJob("pose", tmp_path / "p", views=2))
