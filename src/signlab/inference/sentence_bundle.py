"""Writing a sentence bundle (embedding bank and prototypes of known clips, thresholds calibrated
on held-out clips, dev and test metrics) after training, and re-indexing it from a manifest."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from signlab.config import SentenceConfig
from signlab.data.features import Preprocessor, ScanResult, has_text, scan, scan_split
from signlab.data.manifest import Sample, read_manifests
from signlab.data.stats import FeatureStats
from signlab.errors import SignlabError
from signlab.inference.bundle import save_bundle
from signlab.inference.calibration import calibrated
from signlab.inference.engine import InferenceEngine, SentenceBundle, load_sentence_bundle
from signlab.inference.sentence_eval import evaluate_sentence_samples
from signlab.models.sentence import SignTranslationModel
from signlab.vocab import Vocabulary


def build_sentence_bundle(out: Path, cfg: SentenceConfig, vocab: Vocabulary, stats: FeatureStats, prep: Preprocessor,
                          splits: dict[str, ScanResult], model: SignTranslationModel, test: Sequence[Sample],
                          metrics: dict[str, Any]) -> None:
    """Bank and prototypes from the scanned training clips, thresholds calibrated on dev (when
    asked), dev and ``test`` evaluated, everything written to ``out``."""
    engine = InferenceEngine.build(model, splits["train"], prep, cfg)
    if cfg.engine.calibration == "dev":
        engine_cfg, metrics["calibration"] = calibrated(engine, splits["dev"], prep)
        cfg, engine = cfg.model_copy(update={"engine": engine_cfg}), engine.with_config(engine_cfg)
    bank, protos = engine.bank, engine.protos
    bundle = SentenceBundle(cfg, vocab, stats, model, bank, protos, metrics)
    for split, rows in (("dev", splits["dev"].samples), ("test", test)):
        if rows:
            metrics[split] = evaluate_sentence_samples(bundle, engine, rows, split)
    save_bundle(out, cfg, vocab, stats, model, metrics, {"bank.npz": bank, "prototypes.npz": protos})


def reindex(run: str | Path, manifests: Sequence[str | Path], splits: Sequence[str], calibrate_on: str | None = None,
            features_dir: str | Path | None = None) -> dict[str, Any]:
    """Rebuild a bundle's bank and prototypes from the manifest rows of ``splits``; with
    ``calibrate_on``, choose the thresholds on that split's clips (those not in the bank)."""
    run = Path(run)
    bundle = load_sentence_bundle(run)
    samples = read_manifests(manifests, features_dir)
    rows = [s for s in samples if s.split in splits]
    if not rows:
        raise SignlabError(f"the manifest has no rows in the splits {', '.join(splits)}")
    prep, cfg = bundle.prep, bundle.config

    engine = InferenceEngine.build(bundle.model, scan_split(rows, prep, "index", check=has_text), prep, cfg)
    bank, protos = engine.bank, engine.protos
    info: dict[str, Any] = {"clips": len(bank), "sentences": len(set(bank.sentences.tolist())), "prototypes": len(protos.keys)}
    if calibrate_on:
        in_bank = set(bank.clip_ids.tolist())
        held = scan([s for s in samples if s.split == calibrate_on and s.id not in in_bank and s.text], prep,
                    desc=f"calibrating on {calibrate_on}")
        engine_cfg, info["calibration"] = calibrated(engine, held, prep)
        cfg.model_copy(update={"engine": engine_cfg}).save(run / "config.yaml")
    bank.save(run / "bank.npz")
    protos.save(run / "prototypes.npz")
    return info
