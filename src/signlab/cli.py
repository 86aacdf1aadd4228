"""The ``signlab`` command: one entry point, a subcommand per job."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from signlab.atomic import write_json
from signlab.config import ExtractConfig
from signlab.errors import SignlabError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Train, evaluate and deploy sign language models from video or pose.")


def _console(stderr: bool = False) -> Console:
    """Rich console whose lines are never wrapped (``soft_wrap``), so paths and numbers that
    scripts read stay on one line whatever the terminal width; tables get 120 columns where there
    is no terminal (Rich would assume 80)."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=True, width=None if stream.isatty() else 120)


console = _console(stderr=True)


def _log_handler() -> logging.Handler:
    """Rich's log lines on a terminal; plain, unwrapped ``LEVEL message`` lines in a pipe or file."""
    if sys.stderr.isatty():
        return RichHandler(console=console, show_path=False, show_time=False)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    return handler

Manifests = Annotated[list[Path], typer.Option("--manifest", "-m", help="manifest CSV (repeat for several)")]
Sets = Annotated[list[str] | None, typer.Option("--set", help="override a config key: section.key=value")]


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", handlers=[_log_handler()])


@app.command()
def demo(out: Annotated[Path, typer.Option(help="output folder")] = Path("runs/demo"),
         seed: Annotated[int, typer.Option(help="training seed (the corpus stays the same)")] = 42,
         compare_augmentation: Annotated[bool, typer.Option(help="also train the hybrid without augmentation")] = False,
         ) -> None:
    """Synthetic signer corpus -> hybrid model and TCN baseline -> WER on unseen signers, and every
    decoding method compared."""
    from signlab.demo import DEMO_MODELS, NO_AUGMENTATION, run_demo

    models = {**DEMO_MODELS, **NO_AUGMENTATION} if compare_augmentation else DEMO_MODELS
    run_demo(out, models=models, extra_overrides=(f"training.seed={seed}",), console=_console())


TaskOption = Annotated[str | None, typer.Option(
    help="gloss, sentence or isolated: the task whose built-in config a run starts from, when --config is not given "
         "(default gloss); a config file names its own task")]


@app.command()
def train(
    manifest: Manifests,
    out: Annotated[Path, typer.Option(help="run folder (checkpoints, metrics, bundle)")],
    config: Annotated[Path | None, typer.Option(help="YAML config (default: the task's built-in one)")] = None,
    task: TaskOption = None,
    set_: Sets = None,
    resume: Annotated[bool, typer.Option(help="continue the run in OUT from checkpoints/latest.ckpt")] = False,
    features_dir: Annotated[Path | None, typer.Option(help="feature folder for PHOENIX corpus files")] = None,
) -> None:
    """Train a model on a manifest: gloss recognition, or sentence retrieval and translation (the config's task)."""
    from signlab.tasks import get_task, task_of_file
    from signlab.training.run import is_launcher_process, run_config
    from signlab.training.run import train as run_train

    saved = out / "config.yaml"
    chosen = task_of_file(config) if config else task_of_file(saved) if resume and saved.is_file() else get_task(task or "gloss")
    if task is not None and task != chosen.name:
        raise SignlabError(f"--task {task}, but {config or saved} trains a {chosen.name} model: drop one of them")
    cfg = run_config(out, config, set_ or [], resume, chosen.default_config, chosen.schema)
    run = run_train(manifest, cfg, out, resume=resume, features_dir=features_dir)
    if is_launcher_process():
        _print_metrics(run / "metrics.json", chosen.summary)


Backend = Annotated[str, typer.Option(help="torch, or onnx: the bundle's exported graphs on ONNX Runtime (needs `signlab export`)")]


def _split_rows(manifest: list[Path], split: str, features_dir: Path | None) -> list:
    from signlab.data.manifest import read_manifests

    rows = [s for s in read_manifests(manifest, features_dir) if s.split == split]
    if not rows:
        raise SignlabError(f"the manifest has no rows with split {split!r}")
    return rows


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="run folder / model bundle")],
    manifest: Manifests,
    split: Annotated[str, typer.Option()] = "test",
    output: Annotated[Path | None, typer.Option(help="results JSON (per-clip answers go beside it)")] = None,
    decode: Annotated[str | None, typer.Option(
        help="gloss models: ctc_greedy | ctc_beam | attention | joint | rescore (default: the bundle's), or all: "
             "every method in one table, each clip encoded once")] = None,
    beam_size: Annotated[int | None, typer.Option(help="gloss models: beam width (1 = greedy)")] = None,
    ctc_weight: Annotated[float | None, typer.Option(help="gloss models: weight of CTC scores in joint / rescore")] = None,
    length_penalty: Annotated[float | None, typer.Option(help="gloss models: GNMT length penalty alpha")] = None,
    length_bonus: Annotated[float | None, typer.Option(help="gloss models: attention / joint bonus per output token")] = None,
    batch_size: Annotated[int | None, typer.Option(help="gloss models: clips a batch (default 32)")] = None,
    phoenix_cleanup: Annotated[bool | None, typer.Option("--phoenix-cleanup/--no-phoenix-cleanup")] = None,
    features_dir: Annotated[Path | None, typer.Option()] = None,
    backend: Backend = "torch",
) -> None:
    """A trained model's metrics on one split of a manifest: WER for gloss models; retrieval, decisions,
    alignment and translation for sentence models."""
    from signlab.tasks import task_of_bundle

    _writable(output)
    task = task_of_bundle(run)
    options = {"decode": decode, "beam_size": beam_size, "ctc_weight": ctc_weight, "length_penalty": length_penalty,
               "length_bonus": length_bonus, "batch_size": batch_size, "phoenix_cleanup": phoenix_cleanup}
    results = task.evaluate(run, _split_rows(manifest, split, features_dir), split, output, backend,
                            **{k: v for k, v in options.items() if v is not None})
    if output is not None:  # what `signlab report` needs to read it on its own
        write_json(output, {"task": task.name, "bundle": str(run), **results})
    _console().print(task.show(results))


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="run folder / model bundle")],
    features: Annotated[list[Path], typer.Argument(help=".npy or .pose feature files")],
    json_out: Annotated[Path | None, typer.Option("--json", help="also write every answer, by file, to this JSON file")] = None,
    backend: Backend = "torch",
) -> None:
    """Any model's answers for feature files, one JSON line a file: glosses for gloss models; the
    sentence, its decision and the generated text for sentence models. (Videos: `recognize` / `translate`.)"""
    import json

    from signlab.tasks import load_predictor

    _writable(json_out)
    predictor = load_predictor(run, backend=backend)
    clips = [predictor.prepare(predictor.read(path), str(path)) for path in features]
    answers = {str(p): a for p, a in zip(features, predictor.predict(clips))}
    for path, answer in answers.items():
        _console().print(json.dumps({"file": path, **answer}, ensure_ascii=False), soft_wrap=True, markup=False,
                         highlight=False)
    if json_out is not None:
        write_json(json_out, answers)


extract_app = typer.Typer(no_args_is_help=True, help="Extract features from videos: MediaPipe pose or I3D.")
app.add_typer(extract_app, name="extract")
_X = ExtractConfig()
Videos = Annotated[list[Path], typer.Argument(help="video files, or folders searched recursively")]
Out = Annotated[Path, typer.Option(help="output folder (features, manifest.csv, failures.csv)")]
Workers = Annotated[int, typer.Option(help="worker processes")]
Shard = Annotated[str, typer.Option(help="i/n: take every n-th video starting at the i-th (0-based)")]
Fps = Annotated[float | None, typer.Option(help="resample to this frame rate (0 = as recorded)")]
FrameRate = Annotated[float, typer.Option(help="frames a second of a folder of PNG / JPEG frames (a video's own rate "
                                               "is in the file)")]


def _writable(path: Path | None) -> None:
    """Check an output file's place before the work starts, not after (its folder is created)."""
    if path is None:
        return
    if path.is_dir():
        raise SignlabError(f"{path} is a folder: give the file to write, e.g. {path / 'result.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SignlabError(f"cannot create the folder of {path}: {exc.strerror or exc}") from None
    if not os.access(path.parent, os.W_OK):
        raise SignlabError(f"cannot write {path}: its folder is not writable")


def _shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise SignlabError(f"--shard expects i/n such as 0/4, got {text!r}") from None
    return i, n


def _run_extraction(videos: list[Path], job) -> None:
    from signlab.extract.runner import run_extraction

    outcomes = run_extraction(videos, job, _console())
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)  # the others are done; failures.csv says why these were not


@extract_app.command("pose")
def extract_pose(videos: Videos, out: Out, workers: Workers = 1, shard: Shard = "0/1", fps: Fps = _X.fps,
                 write_pose: Annotated[bool, typer.Option(help="also write pose-format .pose files")] = False,
                 model_complexity: Annotated[int, typer.Option(help="MediaPipe Holistic 0, 1 or 2")] = _X.model_complexity,
                 frame_rate: FrameRate = 25.0) -> None:
    """MediaPipe Holistic landmarks as (T, 540) features, part masks and per-video statistics."""
    from signlab.extract.runner import ExtractionJob
    from signlab.extract.video import VideoOptions

    job = ExtractionJob("pose", out, VideoOptions(fps=fps or None, frame_rate=frame_rate), workers, _shard(shard), write_pose=write_pose,
                        model_complexity=model_complexity)
    _run_extraction(videos, job)


@extract_app.command("i3d")
def extract_i3d(
    videos: Videos, out: Out,
    weights: Annotated[Path | None, typer.Option(help="I3D checkpoint (rgb_imagenet.pt layout)")] = None,
    random_weights: Annotated[bool, typer.Option(help="untrained I3D, for testing the pipeline only")] = False,
    workers: Workers = 1, shard: Shard = "0/1", fps: Fps = _X.fps,
    size: Annotated[int, typer.Option(help="shorter side before the crop")] = _X.size,
    crop: Annotated[int, typer.Option(help="centre crop")] = _X.crop,
    stack_size: Annotated[int, typer.Option(help="frames per window")] = _X.stack_size,
    step_size: Annotated[int, typer.Option(help="frames between windows")] = _X.step_size,
    batch_size: Annotated[int, typer.Option(help="windows per forward pass")] = 8,
    device: Annotated[str, typer.Option()] = "cpu",
    views: Annotated[int, typer.Option(help="also write views - 1 augmented feature views per video (training "
                                            "draws one a clip each epoch)", min=1)] = 1,
    augment: Annotated[str, typer.Option(help="the views' video augmentation: light, medium or heavy (the seed's)")] = "medium",
    frame_rate: FrameRate = 25.0,
) -> None:
    """I3D features over sliding windows: (windows, 1024) per video."""
    from signlab.extract.runner import ExtractionJob
    from signlab.extract.video import VideoOptions

    job = ExtractionJob("i3d", out, VideoOptions(fps=fps or None, size=size, crop=crop, frame_rate=frame_rate), workers, _shard(shard),
                        weights=weights, random_weights=random_weights, stack_size=stack_size, step_size=step_size,
                        batch_size=batch_size, device=device, views=views, augment=augment)
    _run_extraction(videos, job)


corpus_app = typer.Typer(no_args_is_help=True, help="Corpora as they are distributed -> signlab manifests with features.")
app.add_typer(corpus_app, name="corpus")


@corpus_app.command("prepare")
def corpus_prepare(
    name: Annotated[str, typer.Argument(help="phoenix-2014 | phoenix-2014-t | csl-daily | how2sign | how2sign-openpose | "
                                             "wlasl | asl-signs | asl-fingerspelling | slt")],
    root: Annotated[Path, typer.Argument(help="the folder the corpus was unpacked into")],
    out: Out,
    extract: Annotated[str, typer.Option(help="video and frame corpora: pose (MediaPipe Holistic) or i3d")] = "pose",
    workers: Workers = 1,
    fps: Fps = _X.fps,
    subset: Annotated[int | None, typer.Option(help="WLASL: 100, 300, 1000 or 2000 (its nslt_N.json split)")] = None,
    weights: Annotated[Path | None, typer.Option(help="--extract i3d: the I3D checkpoint")] = None,
    random_weights: Annotated[bool, typer.Option(help="--extract i3d: untrained, for testing the pipeline only")] = False,
    limit: Annotated[int | None, typer.Option(help="at most this many clips of each split, for a quick look")] = None,
    views: Annotated[int, typer.Option(help="--extract i3d: also views - 1 augmented feature views per clip", min=1)] = 1,
) -> None:
    """Read a corpus in its distributed layout; write OUT/manifest.csv, features, excluded.csv.
    Preparing again keeps what is done and finishes the rest."""
    from signlab.corpora import PrepareOptions, find, prepare

    found = find(name, root, subset)
    opts = PrepareOptions(extract, workers, fps or None, weights, random_weights, limit, views)
    manifest = prepare(name, found, out, opts, _console())
    _console().print(f"written: {manifest}")


@app.command()
def pack(
    manifests: Annotated[list[Path], typer.Argument(help="manifests (or stores) whose rows go into the store")],
    out: Annotated[Path, typer.Option(help="the store's folder")],
    dtype: Annotated[str, typer.Option(help="float32, or float16 for half the disk and reads")] = "float32",
    feature_kind: Annotated[str, typer.Option(help="the features' kind, when the manifests do not declare it")] = "auto",
    shard_gb: Annotated[float, typer.Option(help="start a new shard file past this size", min=0.001)] = 1.0,
    features_dir: Annotated[Path | None, typer.Option(help="feature folder for PHOENIX corpus files")] = None,
) -> None:
    """Pack the clips of manifests into a few shard files with one index (a store): every command
    that takes a manifest takes the store, and a run on it neither opens a file a clip nor reads
    every clip before its first step. Packing again goes on where a stopped packing ended."""
    from signlab.data.store import pack as pack_store

    _console().print(f"written: {pack_store(manifests, out, feature_kind=feature_kind, dtype=dtype, shard_gb=shard_gb, features_dir=features_dir, console=_console(stderr=True))}")


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="run folders, `evaluate --output` JSON files, `live --jsonl` "
                                                    "files; several: side by side")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the HTML file to write")] = Path("report.html"),
    manifest: Annotated[Path | None, typer.Option("--manifest", "-m", help="the runs' data: adds each worst clip's CTC "
                                                                          "alignment and cross-attention map")] = None,
) -> None:
    """One self-contained HTML page of training runs (curves, decoders, errors, worst clips, data),
    evaluations on other data, and live sessions (latency)."""
    import time

    from signlab.report_page import write_report

    _writable(out)
    for run in runs:
        if not (run.is_dir() or run.is_file() and run.suffix in (".json", ".jsonl")):
            raise SignlabError(f"{run} is not a folder of a run (signlab train --out), nor an evaluation's results "
                               "(signlab evaluate --output X.json), nor a live session (signlab live --jsonl X.jsonl)")
    started = time.perf_counter()
    page = write_report(runs, out, manifest)
    _console().print(f"written: {page} ({page.stat().st_size / 1024:.0f} kB, {time.perf_counter() - started:.1f} s)")


@app.command()
def recognize(
    video: Annotated[Path, typer.Argument(help="a video file, or a folder of PNG / JPEG frames")],
    model: Annotated[Path, typer.Option(help="run folder / model bundle")],
    json_out: Annotated[Path | None, typer.Option("--json", help="write the result as JSON here")] = None,
    decode: Annotated[str | None, typer.Option(help="decoding method (default: the bundle's)")] = None,
    beam_size: Annotated[int | None, typer.Option()] = None,
    i3d_weights: Annotated[Path | None, typer.Option(help="for I3D models: the extraction checkpoint")] = None,
    device: Annotated[str, typer.Option()] = "cpu",
    backend: Backend = "torch",
    frame_rate: FrameRate = 25.0,
) -> None:
    """Glosses signed in a video, with where each one was signed."""
    import time

    from signlab.extract.pipeline import video_features
    from signlab.extract.video import probe
    from signlab.inference.recognizer import Recognizer

    _writable(json_out)
    probe(video, frame_rate)  # a missing or unreadable video fails here, before the model loads
    recognizer = Recognizer.load(model, device, backend, method=decode, beam_size=beam_size)
    vf = video_features(video, recognizer.prep.kind, recognizer.config.extract, i3d_weights, frame_rate)
    started = time.perf_counter()
    transcript = recognizer.transcribe(vf.features, str(video))
    model_s = time.perf_counter() - started
    segments = [{"gloss": g, "start": round(float(vf.times[a]), 3), "end": round(float(vf.times[b]) + 1 / vf.fps, 3)}
                for g, a, b in transcript.ctc_segments]
    result = {"video": str(video), "glosses": transcript.glosses, "text": " ".join(transcript.glosses),
              "decoding": recognizer.decoding.method, "ctc_segments": segments, "frames": vf.frames, "fps": vf.fps,
              "timing_s": {"extract": round(vf.seconds, 3), "model": round(model_s, 3)}}
    out = _console()
    out.print(f"[bold]{video.name}[/]: {vf.frames} frames at {vf.fps:g} fps ({vf.frames / vf.fps:.1f} s); "
              f"features {vf.seconds:.2f} s, model {model_s:.3f} s")
    out.print(f"glosses ({recognizer.decoding.method}): [bold]{result['text'] or '(none)'}[/]")
    if segments:
        out.print("CTC alignment: " + "  ".join(f"{s['gloss']} {s['start']:.2f}-{s['end']:.2f}s" for s in segments))
    if json_out is not None:
        write_json(json_out, result)


@app.command()
def export(run: Annotated[Path, typer.Argument(help="run folder / model bundle (gloss or sentence)")]) -> None:
    """Write the bundle's networks as ONNX (dynamic batch and length) into it, checked against
    PyTorch on ONNX Runtime: a gloss bundle's encoder + CTC head and attention decoder, a sentence
    bundle's encoder. `--backend onnx` then runs them."""
    from signlab.tasks import export_bundle

    export_bundle(run, _console().print)


@app.command()
def live(
    model: Annotated[Path, typer.Option(help="run folder / model bundle (gloss or sentence)")],
    camera: Annotated[int | None, typer.Option(help="a camera: /dev/videoN (V4L2)")] = None,
    url: Annotated[str | None, typer.Option(help="a stream: rtsp://, http://, ...")] = None,
    video: Annotated[Path | None, typer.Option(help="a video file or a folder of frames (as fast as it goes, or --realtime)")] = None,
    features: Annotated[Path | None, typer.Option(help="a feature file (.npy), streamed at --fps")] = None,
    realtime: Annotated[bool, typer.Option(help="play --video at its own frame rate, dropping frames when behind")] = False,
    fps: Annotated[float | None, typer.Option(help="rows a second (default: the bundle's extraction rate)")] = None,
    jsonl: Annotated[Path | None, typer.Option(help="write every event here, one JSON object a line")] = None,
    hop: Annotated[float, typer.Option(help="seconds between partial hypotheses")] = 0.4,
    model_complexity: Annotated[int | None, typer.Option(help="MediaPipe Holistic 0, 1 or 2 (default: the bundle's)")] = None,
    backend: Backend = "torch",
    frame_rate: FrameRate = 25.0,
) -> None:
    """Recognise while the person signs: partial glosses as they come, final ones when they are
    stable or the signer pauses; sentence bundles decide once per pause-delimited segment."""
    from signlab.live import LiveSource, run_live

    _writable(jsonl)
    run_live(model, LiveSource(camera, url, video, features, realtime, fps, frame_rate), jsonl, backend, hop, model_complexity,
             _console())


sentence_app = typer.Typer(no_args_is_help=True, help="Sentence translation and retrieval (the SignTalk workflow).")
app.add_typer(sentence_app, name="sentence")
Run = Annotated[Path, typer.Argument(help="run folder / sentence model bundle")]


@sentence_app.command("train")
def sentence_train(
    manifest: Manifests,
    out: Annotated[Path, typer.Option(help="run folder (checkpoints, metrics, bundle with its embedding bank)")],
    config: Annotated[Path | None, typer.Option(help="YAML config (default: built-in sentence)")] = None,
    set_: Sets = None,
    resume: Annotated[bool, typer.Option(help="continue the run in OUT from checkpoints/latest.ckpt")] = False,
    features_dir: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """`signlab train --task sentence`: SupCon on two views + text decoder + masked frames."""
    train(manifest, out, config, "sentence", set_, resume, features_dir)


@sentence_app.command("evaluate")
def sentence_evaluate(run: Run, manifest: Manifests, split: Annotated[str, typer.Option()] = "test",
                      output: Annotated[Path | None, typer.Option(help="results JSON (predictions beside it)")] = None,
                      backend: Backend = "torch", features_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """`signlab evaluate`: retrieval (top-1, MRR), engine decisions, alignment and translation on a split."""
    evaluate(run, manifest, split, output, features_dir=features_dir, backend=backend)


@sentence_app.command("index")
def sentence_index(run: Run, manifest: Manifests,
                   splits: Annotated[str, typer.Option(help="comma-separated splits whose clips go into the bank")] = "train",
                   calibrate_on: Annotated[str | None, typer.Option(help="split to calibrate the thresholds on")] = None,
                   features_dir: Annotated[Path | None, typer.Option()] = None) -> None:
    """Rebuild the embedding bank and prototypes from a manifest (and recalibrate the thresholds)."""
    from signlab.inference.calibration import describe
    from signlab.inference.sentence_bundle import reindex

    info = reindex(run, manifest, splits.split(","), calibrate_on, features_dir)
    out = _console()
    out.print(f"{run / 'bank.npz'}: {info['clips']} clips of {info['sentences']} sentences, "
              f"{info['prototypes']} sentence prototypes")
    if "calibration" in info:
        c = info["calibration"]
        out.print(f"thresholds calibrated on {calibrate_on} ({c['clips']} clips): {describe(c)}; accepts "
                  f"{c['coverage']:.0%}, {c['precision']:.1%} of them right"
                  + (f", refuses {c['unknown_rejection']:.0%} of them left out of the bank" if "unknown_rejection" in c else "")
                  + f" -> {run / 'config.yaml'}")


@sentence_app.command("predict")
def sentence_predict(run: Run, features: Annotated[list[Path], typer.Argument(help=".npy or .pose feature files")],
                     json_out: Annotated[Path | None, typer.Option("--json")] = None, backend: Backend = "torch",
                     topk: Annotated[int, typer.Option()] = 5) -> None:
    """Retrieve the sentence of each clip, with the accept / reject decision and its reason."""

    from signlab.inference.engine import InferenceEngine

    _writable(json_out)
    engine = InferenceEngine.load(run, backend)
    results = {}
    for path in features:
        p = engine.predict(engine.prep.read(path), topk)
        results[str(path)] = p.as_dict()
        _print_prediction(path.name, p)
    if json_out is not None:
        write_json(json_out, results)


@sentence_app.command("export")
def sentence_export(run: Run) -> None:
    """`signlab export RUN`."""
    export(run)


@sentence_app.command("demo")
def sentence_demo(out: Annotated[Path, typer.Option(help="output folder")] = Path("runs/sentence_demo"),
                  set_: Sets = None) -> None:
    """Synthetic sentence corpus (near-duplicate phrases, unknown sentences) -> train -> export ONNX ->
    evaluate on unseen signers; --set changes the sentence_demo config."""
    from signlab.demo import run_sentence_demo

    run_sentence_demo(out, extra_overrides=tuple(set_ or ()), console=_console())


@app.command()
def translate(
    video: Annotated[Path, typer.Argument(help="a video file")],
    model: Annotated[Path, typer.Option(help="sentence model bundle")],
    json_out: Annotated[Path | None, typer.Option("--json")] = None,
    backend: Backend = "torch",
) -> None:
    """The sentence signed in a video: retrieved with a confidence and a decision, and generated."""

    from signlab.extract.pipeline import video_features
    from signlab.extract.video import probe
    from signlab.inference.decision import no_signer
    from signlab.inference.engine import InferenceEngine, load_sentence_bundle
    from signlab.inference.sentence_eval import translate_encoded

    _writable(json_out)
    probe(video)
    bundle = load_sentence_bundle(model)
    engine = InferenceEngine.from_bundle(bundle, model, backend)
    vf = video_features(video, bundle.prep.kind, bundle.config.extract)
    clip = engine.prepare(vf.features, str(video))
    prediction, generated = no_signer(), ""
    if clip is not None:  # encoded once, for retrieval and translation
        enc = engine.encode([clip], keep_context=True)
        prediction, generated = engine.decide_encoded([clip], enc)[0], translate_encoded(bundle, enc)[0]
    _print_prediction(video.name, prediction)
    _console().print(f"generated: [bold]{generated}[/]")
    if json_out is not None:
        write_json(json_out, {"video": str(video), "retrieval": prediction.as_dict(), "generated": generated,
                              "frames": vf.frames, "fps": vf.fps})


def _print_prediction(name: str, p) -> None:
    out = _console()
    verdict = "[green]accepted[/]" if p.accepted else f"[yellow]rejected ({p.reason})[/]"
    out.print(f"[bold]{name}[/]: {verdict}; {p.text or '-'} (confidence {p.confidence:.0%}, motion {p.motion:.2e})")
    for c in p.candidates[:5]:
        dtw = "" if c.dtw_distance is None else f", dtw {c.dtw_distance:.3f}"
        out.print(f"  {c.rank}. {c.similarity:.3f} (cosine {c.cosine:.3f}{dtw}) {c.text}")


@app.command()
def serve(
    runs: Annotated[list[Path], typer.Argument(help="bundles to serve (gloss or sentence); each is named by its folder")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    backend: Backend = "torch",
    api_key_file: Annotated[Path | None, typer.Option(help="file holding the API key clients send as a bearer token")] = None,
    max_batch: Annotated[int, typer.Option(help="most clips run as one model call")] = 16,
    max_wait_ms: Annotated[float, typer.Option(help="longest wait for more clips to fill a batch")] = 10.0,
    max_body_mb: Annotated[float, typer.Option(help="largest request body")] = 32.0,
    max_frames: Annotated[int, typer.Option(help="longest clip, in frames")] = 3000,
    max_video_s: Annotated[float, typer.Option(help="longest uploaded video, in seconds")] = 120.0,
    workers: Annotated[int, typer.Option(help="server processes, each with its own copy of the models")] = 1,
    device: Annotated[str, typer.Option()] = "cpu",
) -> None:
    """Serve bundles over HTTP: POST /v1/models/NAME:predict, GET /v1/models, /metrics, /healthz,
    /readyz; OpenAPI docs at /docs. SIGTERM lets requests in flight finish."""
    import json

    import uvicorn

    from signlab.service import SETTINGS_ENV, load_app

    settings = {"runs": [str(r) for r in runs], "device": device, "backend": backend,
                "api_key_file": None if api_key_file is None else str(api_key_file),
                "limits": {"max_body_bytes": int(max_body_mb * 2**20), "max_frames": max_frames,
                           "max_video_s": max_video_s, "max_batch": max_batch, "max_wait_ms": max_wait_ms}}
    app = load_app(**settings)  # in workers too, each loads its own; this one checks the bundles first
    console.print(f"serving {', '.join(app.state.models)} on http://{host}:{port}"
                  + (f" with {workers} worker processes" if workers > 1 else ""))
    options = {"host": host, "port": port, "log_level": "warning", "timeout_graceful_shutdown": 30}
    if workers > 1:
        del app
        os.environ[SETTINGS_ENV] = json.dumps(settings)
        uvicorn.run("signlab.service:app_from_env", factory=True, workers=workers, **options)
    else:
        uvicorn.run(app, **options)


def _print_metrics(path: Path, line) -> None:
    """One line per evaluated split of a run's metrics.json."""
    import json

    if path.exists():
        m = json.loads(path.read_text())
        for split in ("dev", "test"):
            if split in m:
                _console().print(f"{split}: {line(m[split])}")


def main() -> None:
    try:
        app()
    except SignlabError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(getattr(exc, "exit_code", 2))


if __name__ == "__main__":
    main()
