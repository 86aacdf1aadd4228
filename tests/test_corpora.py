"""Corpora as distributed: each importer on a small tree in its corpus's exact layout (made here, or
the real samples in ../shared), through `signlab corpus prepare`, and on to train and evaluate."""

from __future__ import annotations

import csv
import gzip
import io
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from signlab.corpora import find
from signlab.corpora.kaggle import PARTS, read_long_parquet
from signlab.corpora.videos import AllowListUnpickler, read_openpose_clip, read_slt_file
from signlab.errors import SignlabError
from signlab.pose import LEFT_SHOULDER, LEFT_WRIST, NOSE, POSE_POINTS, RIGHT_SHOULDER, normalize_body, part_mask, points
from tests.conftest import REAL_DATA, needs_real_data, run_cli

TINY = ["model.input_dim=null", "model.d_model=32", "model.nhead=2", "model.num_encoder_layers=1", "model.num_decoder_layers=1",
        "model.dim_feedforward=64", "training.epochs=1", "training.batch_size=4", "training.accelerator=cpu",
        "training.lr=1e-3", "training.warmup_epochs=0", "data.augmentation=false"]


def sets(*overrides: str) -> list[str]:
    return [a for o in (*TINY, *overrides) for a in ("--set", o)]


@pytest.fixture(scope="module")
def person_frames() -> list[np.ndarray]:
    """24 frames of a real signer (a WLASL clip), small: what frame folders are made of here."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"{REAL_DATA} not present")
    from PIL import Image

    from signlab.extract.video import VideoOptions, read_video

    frames = read_video(REAL_DATA / "wlasl_18068.mp4", VideoOptions(size=260))[:24]
    return [np.asarray(Image.fromarray(f).resize((210, 260))) for f in frames]


def write_frames(folder: Path, frames: list[np.ndarray], pattern: str, first: int = 0) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / pattern.format(first + i))


def train_and_evaluate(manifest: Path, tmp_path: Path, *extra: str, evaluate: tuple[str, ...] = ()) -> dict:
    """`signlab train` for a few steps, then `signlab evaluate` on test; the results."""
    run = tmp_path / "run"
    done = run_cli("train", "-m", str(manifest), "--out", str(run), *sets(*extra))
    assert done.returncode == 0, done.stderr[-2000:]
    done = run_cli("evaluate", str(run), "-m", str(manifest), "--split", "test", "--output", str(tmp_path / "t.json"),
                   *evaluate)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads((tmp_path / "t.json").read_text())


# ----------------------------------------------------------------------------- PHOENIX


@needs_real_data()
@pytest.mark.slow
def test_phoenix_2014_t_real_annotations_read_in_full_and_missing_frames_counted(person_frames, tmp_path):
    real = REAL_DATA / "phoenix-2014-t" / "annotations" / "manual"
    root = tmp_path / "PHOENIX-2014-T-release-v3" / "PHOENIX-2014-T"
    shutil.copytree(real, root / "annotations" / "manual")
    found = find("phoenix-2014-t", root)
    assert len(found.excluded.rows) == 7096 + 519 + 642 and not found.clips  # no frames at all yet
    train_rows = [r for r in csv.DictReader(open(real / "PHOENIX-2014-T.train.corpus.csv"), delimiter="|")]
    assert len({g for r in train_rows for g in r["orth"].split()}) == 1085
    short = {s: [r for r in csv.DictReader(open(real / f"PHOENIX-2014-T.{s}.corpus.csv"), delimiter="|")
                 if len(r["orth"].split()) <= 5][:n] for s, n in (("train", 4), ("dev", 2), ("test", 2))}
    frames = root / "features" / "fullFrame-210x260px"
    for split, rows in short.items():
        for k, r in enumerate(rows):  # the released layout (no /1/), and once as the CSV's video column says
            folder = frames / split / (r["video"].replace("/*.png", "") if k == 0 else r["name"])
            write_frames(folder, person_frames, "images{:04d}.png", first=1)
    out = tmp_path / "prepared"
    done = run_cli("corpus", "prepare", "phoenix-2014-t", str(root), "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "excluded 8249 of 8257 rows: missing" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert len(rows) == 8 and {r["feature_kind"] for r in rows} == {"pose/holistic-540"}
    assert sum(1 for _ in open(out / "excluded.csv")) == 8249 + 1
    assert np.load(out / rows[0]["features"]).shape == (24, 540)
    again = run_cli("corpus", "prepare", "phoenix-2014-t", str(root), "--out", str(out))  # nothing left to do
    assert again.returncode == 0 and "8 skipped" in again.stdout.replace("\n", " ")
    result = train_and_evaluate(out / "manifest.csv", tmp_path, "model.subsampling=1", evaluate=("--phoenix-cleanup",))
    assert result["phoenix_cleanup"] is True and result["n"] == 2


def test_phoenix_2014_frame_folders_with_gaps_and_unreadable_frames_are_counted(tmp_path):
    root = tmp_path / "phoenix2014-release" / "phoenix-2014-multisigner"
    manual = root / "annotations" / "manual"
    manual.mkdir(parents=True)
    frames = np.zeros((4, 260, 210, 3), np.uint8)
    for split in ("train", "dev", "test"):
        lines = ["id|folder|signer|annotation"]
        for k in range(3):
            clip = f"{split}_clip{k}"
            lines.append(f"{clip}|{clip}/1/*.png|Signer0{k}|__ON__ REGEN WIND __OFF__")
            folder = root / "features" / "fullFrame-210x260px" / split / clip / "1"
            if k < 2:
                write_frames(folder, list(frames), f"{clip}.avi_pid0_fn{{:06d}}-0.png")
        (manual / f"{split}.corpus.csv").write_text("\n".join(lines) + "\n")
    gap = root / "features" / "fullFrame-210x260px" / "train" / "train_clip1" / "1"
    next(iter(sorted(gap.iterdir()))).with_name("train_clip1.avi_pid0_fn000001-0.png").unlink()
    found = find("phoenix-2014", root)
    kinds = sorted(r["kind"] for r in found.excluded.rows)
    assert kinds == ["gap", "missing", "missing", "missing"]
    assert [c.id for c in found.clips] == ["train_clip0", "dev_clip0", "dev_clip1", "test_clip0", "test_clip1"]
    assert found.clips[0].glosses == ("__ON__", "REGEN", "WIND", "__OFF__")
    with pytest.raises(SignlabError, match=r"does not look like PHOENIX-2014-T: .*PHOENIX-2014-T.train.corpus.csv not found"):
        find("phoenix-2014-t", root)


def test_a_frame_folder_is_a_video(tmp_path):
    from signlab.extract.video import VideoError, VideoOptions, probe, read_video

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (40, 30, 3), np.uint8) for _ in range(10)]
    write_frames(tmp_path / "clip", frames, "{:06d}.jpg")
    write_frames(tmp_path / "png", frames, "images{:04d}.png", first=1)
    png = read_video(tmp_path / "png")
    assert png.shape == (10, 40, 30, 3) and np.array_equal(png[3], frames[3])  # in numeric order, lossless
    assert read_video(tmp_path / "clip").shape == (10, 40, 30, 3)
    assert len(read_video(tmp_path / "png", VideoOptions(fps=12.5, frame_rate=25))) == 5
    assert read_video(tmp_path / "png", VideoOptions(start=2, end=6, size=20, crop=16)).shape == (4, 16, 16, 3)
    assert probe(tmp_path / "png", 30).fps == 30 and probe(tmp_path / "png").width == 30
    (tmp_path / "png" / "images0005.png").write_bytes(b"not a png")
    with pytest.raises(VideoError, match="images0005.png is not a readable image"):
        read_video(tmp_path / "png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="holds no PNG or JPEG frames"):
        read_video(tmp_path / "empty")


# ----------------------------------------------------------------------------- CSL-Daily


@needs_real_data()
@pytest.mark.slow
def test_csl_daily_prepared_trained_and_evaluated(person_frames, tmp_path):
    root = tmp_path / "CSL-Daily"
    labels = root / "sentence_label"
    labels.mkdir(parents=True)
    names = [f"S00000{i}_P000{i % 3}_T00" for i in range(7)]
    (labels / "video_map.txt").write_text("index|name|length|gloss|char|word|postag\n" + "".join(
        f"{i}|{n}|24|我 喜欢 你|我 喜 欢 你|我 喜欢 你|r v r\n" for i, n in enumerate(names)))
    (labels / "split_1.txt").write_text("name|split\n" + "".join(
        f"{n}|{'train' if i < 3 else 'dev' if i < 5 else 'test'}\n" for i, n in enumerate(names[:-1])))
    for n in names[:-2]:
        write_frames(root / "sentence" / "frames_512x512" / n, person_frames, "{:06d}.jpg")
    out = tmp_path / "prepared"
    done = run_cli("corpus", "prepare", "csl-daily", str(root), "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no_split" in done.stderr  # the last clip has no split; the one before, no frames
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert [r["split"] for r in rows] == ["train", "train", "train", "dev", "dev"]
    assert rows[0]["text"] == "我喜欢你" and rows[0]["signer"] == "P0000" and rows[0]["glosses"] == "我 喜欢 你"
    assert "test" in done.stderr  # no test clip could be prepared: said
    (out / "manifest.csv").write_text((out / "manifest.csv").read_text().replace(",dev,", ",test,", 1))
    train_and_evaluate(out / "manifest.csv", tmp_path, "model.subsampling=1")


# ----------------------------------------------------------------------------- How2Sign


def h2s_csv(path: Path, rows: list[tuple[str, str, float, float, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["VIDEO_ID\tVIDEO_NAME\tSENTENCE_ID\tSENTENCE_NAME\tSTART_REALIGNED\tEND_REALIGNED\tSENTENCE"]
    lines += [f"{v}\t{v}-1-rgb_front\t{name}_id\t{name}\t{a}\t{b}\t{text}" for v, name, a, b, text in rows]
    path.write_text("\n".join(lines) + "\n")


@needs_real_data()
def test_how2sign_clips_time_ranges_and_missing_videos(tmp_path):
    root = tmp_path / "how2sign"
    clip = "-d5dN54tH2E_12-1-rgb_front"
    (root / "sentence_level" / "val" / "rgb_front" / "raw_videos").mkdir(parents=True)
    shutil.copy(REAL_DATA / f"{clip}.mp4", root / "sentence_level" / "val" / "rgb_front" / "raw_videos")
    shutil.copy(REAL_DATA / f"{clip}.mp4", root / "whole-1-rgb_front.mp4")
    h2s_csv(root / "how2sign_realigned_val.csv", [("-d5dN54tH2E", "-d5dN54tH2E_12-1", 0.0, 3.4, "Now together."),
                                                  ("whole", "whole_3-1", 0.5, 2.0, "A range."),
                                                  ("gone", "gone_1-1", 0.0, 1.0, "No video.")])
    found = find("how2sign", root)
    assert [c.id for c in found.clips] == ["-d5dN54tH2E_12-1", "whole_3-1"] and found.clips[0].split == "dev"
    assert found.clips[1].start_time == 0.5 and found.clips[1].video.name == "whole-1-rgb_front.mp4"
    assert [r["kind"] for r in found.excluded.rows] == ["missing"]
    with pytest.raises(SignlabError, match="does not look like How2Sign"):
        find("how2sign", tmp_path / "how2sign" / "sentence_level")


@needs_real_data()
@pytest.mark.slow
def test_how2sign_openpose_keypoints_prepared_and_trained_as_sentences(tmp_path):
    root = tmp_path / "how2sign"
    real = sorted((REAL_DATA / "openpose").glob("*_keypoints.json"))
    names = [f"clip{i}" for i in range(6)]
    for i, name in enumerate(names):
        folder = root / "openpose_output" / "json" / name
        folder.mkdir(parents=True)
        for k, f in enumerate(real[i % 3:]):
            shutil.copy(f, folder / f"{name}_{k:012d}_keypoints.json")
    two = json.loads(real[0].read_text())
    two["people"] *= 2
    (root / "openpose_output" / "json" / "clip5" / "clip5_000000000002_keypoints.json").write_text(json.dumps(two))
    splits = {"train": names[:3], "val": names[3:4], "test": names[4:]}
    for split, rows in splits.items():
        h2s_csv(root / f"how2sign_realigned_{split}.csv",
                [(f"v{n}", n, 0, 1, "we go home" if i % 2 else "you go home") for i, n in enumerate(rows)])
    clip = read_openpose_clip(root / "openpose_output" / "json" / "clip0")
    assert clip.shape == (9, 540) and part_mask(clip).all()  # BODY_25, both hands and the face, in Holistic's layout
    pts = points(clip)
    assert (pts[:, LEFT_SHOULDER, 0] > pts[:, NOSE, 0]).all() and (pts[:, RIGHT_SHOULDER, 0] < pts[:, NOSE, 0]).all()
    assert np.allclose(pts[:, LEFT_WRIST, :2], pts[:, POSE_POINTS, :2], atol=0.03)  # body and hand agree on the wrist
    assert normalize_body(clip) is not None and (points(clip)[:, POSE_POINTS + 42:] != 0).any(-1).sum(1).max() == 22
    out = tmp_path / "prepared"
    done = run_cli("corpus", "prepare", "how2sign-openpose", str(root), "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 people in the frame" in done.stderr
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert len(rows) == 5 and rows[0]["feature_kind"] == "pose/holistic-540" and rows[0]["text"]
    assert part_mask(np.load(out / rows[0]["features"]))[:, 0].all()  # missing parts are zeros: no mask file is needed
    sentence_tiny = ["model.proj_dim=16", "model.embed_dim=16", "model.attn_heads=2", "model.encoder_layers=1",
                     "model.encoder_ff_dim=32", "model.decoder_layers=1", "training.epochs=1", "training.batch_size=2",
                     "training.accelerator=cpu", "data.seq_len=16"]
    run = tmp_path / "run"
    done = run_cli("sentence", "train", "-m", str(out / "manifest.csv"), "--out", str(run),
                   *[a for o in sentence_tiny for a in ("--set", o)])
    assert done.returncode == 0, done.stderr[-2000:]
    done = run_cli("sentence", "evaluate", str(run), "-m", str(out / "manifest.csv"), "--output", str(tmp_path / "e.json"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "e.json").read_text())["n"] == 1


# ----------------------------------------------------------------------------- WLASL


@needs_real_data()
@pytest.mark.slow
def test_wlasl_json_and_nslt_splits_prepared_trained_and_scored_by_accuracy(tmp_path):
    root = tmp_path / "WLASL"
    (root / "videos").mkdir(parents=True)
    clips = {"01377": "afraid", "18068": "duty", "65076": "answer"}
    instances = []
    for k, (vid, gloss) in enumerate(clips.items()):
        for split, copy in (("train", f"{vid}"), ("train", f"9{vid}"), ("val", f"8{vid}"), ("test", f"7{vid}")):
            shutil.copy(REAL_DATA / f"wlasl_{vid}.mp4", root / "videos" / f"{copy}.mp4")
            instances.append((gloss, {"video_id": copy, "split": split, "signer_id": k, "frame_start": 1,
                                      "frame_end": 16, "fps": 25, "bbox": [0, 0, 10, 10]}))
    instances.append(("afraid", {"video_id": "00000", "split": "train", "signer_id": 9, "frame_start": 1, "frame_end": -1}))
    index = {}
    for gloss, inst in instances:
        index.setdefault(gloss, []).append(inst)
    (root / "WLASL_v0.3.json").write_text(json.dumps([{"gloss": g, "instances": i} for g, i in index.items()]))
    (root / "nslt_100.json").write_text(json.dumps({i["video_id"]: {"subset": i["split"], "action": [0, 1, 16]}
                                                    for _, i in instances[:8]}))
    subset = find("wlasl", root, 100)
    assert len(subset.clips) == 8 and not subset.excluded.rows
    found = find("wlasl", root)
    assert found.clips[0].start == 0 and found.clips[0].end == 16 and found.clips[0].glosses == ("AFRAID",)
    assert [r["kind"] for r in found.excluded.rows] == ["missing"]  # video 00000 was never downloaded
    out = tmp_path / "prepared"
    done = run_cli("corpus", "prepare", "wlasl", str(root), "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    result = train_and_evaluate(out / "manifest.csv", tmp_path, "model.subsampling=1")
    assert set(result["isolated"]) >= {"top1", "top5", "mean_class_top1", "per_class_top1"}
    assert result["isolated"]["top5"] >= result["isolated"]["top1"]


# ----------------------------------------------------------------------------- Kaggle


@needs_real_data()
@pytest.mark.slow
def test_kaggle_isolated_signs_prepared_trained_and_scored(tmp_path):
    out = tmp_path / "prepared"
    done = run_cli("corpus", "prepare", "asl-signs", str(REAL_DATA / "asl-signs"), "--out", str(out), "--workers", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert len(rows) == 12 and {r["split"] for r in rows} == {"train", "dev", "test"}
    by_split = {s: {r["signer"] for r in rows if r["split"] == s} for s in ("train", "dev", "test")}
    assert all(len(v) == 1 for v in by_split.values()) and len(set.union(*by_split.values())) == 3  # whole signers
    assert part_mask(np.load(out / rows[0]["features"]))[:, 0].all()  # the body in every frame
    result = train_and_evaluate(out / "manifest.csv", tmp_path, "model.subsampling=1")
    assert 0 <= result["isolated"]["top1"] <= result["isolated"]["top5"] <= 1


def long_table(landmarks, frames: np.ndarray):
    """A clip's Holistic landmarks as Kaggle's long parquet table (frame, row_id, type, landmark_index, x, y, z)."""
    import pyarrow as pa

    cols: dict[str, list] = {k: [] for k in ("frame", "row_id", "type", "landmark_index", "x", "y", "z")}
    parts = {"face": landmarks.face, "left_hand": landmarks.left_hand, "pose": landmarks.body[..., :3],
             "right_hand": landmarks.right_hand}
    for t, frame in enumerate(frames):
        for name in ("face", "left_hand", "pose", "right_hand"):
            points = parts[name][t].astype(np.float64)
            if not points.any():
                points = np.full_like(points, np.nan)  # Kaggle: NaN where the part was not found
            for i, (x, y, z) in enumerate(points):
                for k, v in zip(cols, (int(frame), f"{frame}-{name}-{i}", name, i, x, y, z)):
                    cols[k].append(v)
    return pa.table({k: pa.array(v, type=pa.int16() if k in ("frame", "landmark_index") else None) for k, v in cols.items()})


@needs_real_data()
@pytest.mark.slow
def test_kaggle_parquet_lands_in_the_layout_signlab_extracts(tmp_path):
    """A real clip through MediaPipe as signlab runs it, and the same landmarks as Kaggle stores
    them read back through the parquet path: the same 540 columns."""
    import pyarrow.parquet as pq

    from signlab.extract.holistic import HolisticExtractor
    from signlab.extract.video import VideoOptions, iter_frames

    landmarks = HolisticExtractor().landmarks(iter_frames(REAL_DATA / "wlasl_65076.mp4", VideoOptions(fps=25)))
    ours = landmarks.features()
    table = long_table(landmarks, np.arange(len(ours)) + 17)
    pq.write_table(table, tmp_path / "clip.parquet")
    theirs = read_long_parquet(tmp_path / "clip.parquet")
    # Kaggle's own row order is reshaped; any other order is placed row by row, to the same result
    pq.write_table(table.take(np.random.default_rng(0).permutation(table.num_rows)), tmp_path / "shuffled.parquet")
    assert np.array_equal(read_long_parquet(tmp_path / "shuffled.parquet"), theirs)
    from signlab import pose

    assert theirs.shape == ours.shape
    xyz = pose.XYZ_COLUMNS.ravel()
    np.testing.assert_allclose(theirs[:, xyz], ours[:, xyz], atol=1e-6)
    assert np.array_equal(pose.part_mask(theirs), pose.part_mask(ours))
    body_found = pose.part_mask(ours)[:, 0]
    assert (theirs[body_found][:, pose.VISIBILITY_COLUMNS] == 1).all()  # the corpus has no visibility


def test_fingerspelling_wide_files_and_a_missing_landmark_type(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    columns = {"sequence_id": [], "frame": []}
    names = [f"{a}_{p}_{i}" for p, n in PARTS.items() for i in range(n) for a in "xyz"]
    for seq, length in ((7, 5), (3, 4)):
        columns["sequence_id"] += [seq] * length
        columns["frame"] += list(range(length))
    values = rng.random((9, len(names)))
    values[:, [i for i, c in enumerate(names) if "left_hand" in c]] = np.nan
    table = pa.table({**columns, **{c: values[:, i] for i, c in enumerate(names)}})
    (tmp_path / "train_landmarks").mkdir()
    pq.write_table(table, tmp_path / "train_landmarks" / "1.parquet")
    pq.write_table(table.drop([c for c in names if "face" in c]), tmp_path / "train_landmarks" / "2.parquet")
    (tmp_path / "train.csv").write_text("path,file_id,sequence_id,participant_id,phrase\n"
                                        "train_landmarks/1.parquet,1,7,10,a b\ntrain_landmarks/1.parquet,1,3,11,cd\n"
                                        "train_landmarks/2.parquet,2,7,12,ef\ntrain_landmarks/9.parquet,9,1,12,gh\n")
    found = find("asl-fingerspelling", tmp_path)
    assert [c.glosses for c in found.clips] == [("a", "_", "b"), ("c", "d"), ("e", "f")]
    assert [r["kind"] for r in found.excluded.rows] == ["missing"]
    seven = found.clips[0].load(found.clips[0].item)
    assert seven.shape == (5, 540) and not seven[:, 132:195].any()  # left hand never found: zeros
    with pytest.raises(SignlabError, match="has no face landmarks"):
        found.clips[2].load(found.clips[2].item)


# ----------------------------------------------------------------------------- Sign Language Transformers


def slt_pickle(path: Path, items: list[dict]) -> None:
    with gzip.open(path, "wb") as f:
        pickle.dump(items, f)


@needs_real_data()
def test_slt_files_read_through_an_allow_list(tmp_path):
    assert len(read_slt_file(REAL_DATA / "slt" / "phoenix14t.pami0.dev.annotations-only.gz")) == 519
    rng = torch.Generator().manual_seed(0)
    items = [{"name": f"{split}/clip{i}", "signer": f"Signer0{i % 2}", "gloss": "REGEN WIND", "text": "es regnet",
              "sign": torch.randn(12, 1024, generator=rng)} for split in ("train",) for i in range(4)]
    slt_pickle(tmp_path / "phoenix14t.pami0.train", items)
    for split in ("dev", "test"):
        slt_pickle(tmp_path / f"phoenix14t.pami0.{split}", [{**items[0], "name": f"{split}/c"}, {**items[1], "name": f"{split}/d"}])
    shutil.copy(REAL_DATA / "slt" / "phoenix14t.pami0.dev.annotations-only.gz", tmp_path / "old.dev.gz")
    found = find("slt", tmp_path)
    assert len(found.clips) == 8 and len(found.excluded.rows) == 519 and found.kind == "slt-1024"
    assert np.allclose(found.clips[0].load(found.clips[0].item), items[0]["sign"].numpy())


def test_a_crafted_pickle_runs_no_code(tmp_path):
    class Evil:
        def __reduce__(self):
            import os

            return os.system, ("touch " + str(tmp_path / "pwned"),)

    slt_pickle(tmp_path / "bad.train", [{"name": "x", "gloss": "A", "sign": Evil()}])
    with pytest.raises(SignlabError, match="refused to build posix.system|refused to build os.system"):
        read_slt_file(tmp_path / "bad.train")
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(pickle.UnpicklingError):
        AllowListUnpickler(io.BytesIO(pickle.dumps(np.zeros(3)))).load()  # numpy arrays are not on the list either


@needs_real_data()
@pytest.mark.slow
def test_slt_features_prepared_trained_and_evaluated(tmp_path):
    items = [{"name": f"train/c{i}", "signer": "S1", "gloss": "REGEN WIND" if i % 2 else "SONNE", "text": "t",
              "sign": torch.randn(16, 1024)} for i in range(6)]
    slt_pickle(tmp_path / "x.train", items)
    slt_pickle(tmp_path / "x.dev", [{**items[0], "name": "dev/d0"}, {**items[1], "name": "dev/d1"}])
    slt_pickle(tmp_path / "x.test", [{**items[2], "name": "test/t0"}, {**items[3], "name": "test/t1"}])
    out = tmp_path / "prepared"
    done = run_cli("corpus", "prepare", "slt", str(tmp_path), "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert train_and_evaluate(out / "manifest.csv", tmp_path)["n"] == 2


def test_unknown_corpus_and_wrong_root_are_one_line_errors(tmp_path):
    done = run_cli("corpus", "prepare", "phoenix", str(tmp_path), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "unknown corpus 'phoenix'; known: phoenix-2014, phoenix-2014-t" in done.stderr
    done = run_cli("corpus", "prepare", "asl-signs", str(tmp_path), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and f"{tmp_path / 'train.csv'} not found" in done.stderr.replace("\n", "")
    assert "Traceback" not in done.stderr
