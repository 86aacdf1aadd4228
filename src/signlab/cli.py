"""The ``signlab`` command: one entry point, a subcommand per job."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

from signlab.errors import SignlabError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Train, evaluate and deploy sign language models from video or pose.")
console = Console(stderr=True)

Manifests = Annotated[list[Path], typer.Option("--manifest", "-m", help="manifest CSV (repeat for several)")]
Sets = Annotated[Optional[list[str]], typer.Option("--set", help="override a config key: section.key=value")]


@app.callback()
def _setup(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False, show_time=False)])
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.INFO if verbose else logging.WARNING)


@app.command()
def demo(out: Annotated[Path, typer.Option(help="output folder")] = Path("runs/demo")) -> None:
    """Generate the synthetic signer corpus, train hybrid and TCN models, compare them."""
    from signlab.demo import run_demo

    run_demo(out, console=Console())


@app.command()
def train(
    manifest: Manifests,
    out: Annotated[Path, typer.Option(help="run folder (checkpoints, metrics, bundle)")],
    config: Annotated[Optional[Path], typer.Option(help="YAML config (default: built-in hybrid)")] = None,
    set_: Sets = None,
    resume: Annotated[bool, typer.Option(help="continue the run in OUT from checkpoints/latest.ckpt")] = False,
    features_dir: Annotated[Optional[Path], typer.Option(help="feature folder for PHOENIX corpus files")] = None,
) -> None:
    """Train a gloss recogniser on a manifest."""
    from signlab.config import builtin_config, load_config
    from signlab.training.run import is_launcher_process, train as run_train

    base = out / "config.yaml" if resume else (config or builtin_config("hybrid"))
    cfg = load_config(base, set_ or [])
    run = run_train(manifest, cfg, out, resume=resume, features_dir=features_dir)
    if is_launcher_process():
        _print_metrics(run / "metrics.json")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="run folder / model bundle")],
    manifest: Manifests,
    split: Annotated[str, typer.Option()] = "test",
    output: Annotated[Optional[Path], typer.Option(help="results JSON (hypotheses go beside it)")] = None,
    decode: Annotated[Optional[str], typer.Option(
        help="ctc_greedy | ctc_beam | attention | joint | rescore (default: the bundle's)")] = None,
    beam_size: Annotated[Optional[int], typer.Option(help="beam width (1 = greedy)")] = None,
    ctc_weight: Annotated[Optional[float], typer.Option(help="weight of CTC scores in joint / rescore")] = None,
    length_penalty: Annotated[Optional[float], typer.Option(help="GNMT length penalty alpha")] = None,
    batch_size: Annotated[int, typer.Option()] = 32,
    phoenix_cleanup: Annotated[Optional[bool], typer.Option("--phoenix-cleanup/--no-phoenix-cleanup")] = None,
    features_dir: Annotated[Optional[Path], typer.Option()] = None,
) -> None:
    """WER of a trained model on one split of a manifest."""
    import json

    from signlab.inference.recognizer import evaluate as run_evaluate

    results = run_evaluate(run, manifest, split, output, batch_size, phoenix_cleanup, features_dir, method=decode,
                           beam_size=beam_size, ctc_weight=ctc_weight, length_penalty=length_penalty)
    Console().print_json(json.dumps(results))


def _print_metrics(path: Path) -> None:
    import json

    if path.exists():
        m = json.loads(path.read_text())
        for split in ("dev", "test"):
            if split in m:
                r = m[split]
                Console().print(f"{split}: WER {r['wer']:.2f}% (sub {r['sub']}, del {r['del']}, ins {r['ins']}, "
                                f"n {r['n']}), blank ratio {r['blank_ratio']:.3f}, decoding {r['decoding']}")


def main() -> None:
    try:
        app()
    except SignlabError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
