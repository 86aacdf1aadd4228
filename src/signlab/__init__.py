"""signlab: train, evaluate and deploy sign language models from video or pose."""

from signlab.config import Config, builtin_config, load_config
from signlab.data.manifest import Sample, read_manifest, read_manifests
from signlab.data.synthetic import CorpusSpec, generate_corpus
from signlab.errors import SignlabError
from signlab.inference.bundle import load_bundle
from signlab.inference.recognizer import Recognizer, evaluate
from signlab.models import GlossDecoder, HybridCTCAttentionModel, TCNCTCModel
from signlab.training.run import train
from signlab.vocab import Vocabulary

__version__ = "0.1.0"
__all__ = [
    "Config", "CorpusSpec", "GlossDecoder", "HybridCTCAttentionModel", "Recognizer", "Sample", "SignlabError",
    "TCNCTCModel", "Vocabulary", "builtin_config", "evaluate", "generate_corpus", "load_bundle", "load_config",
    "read_manifest", "read_manifests", "train",
]
