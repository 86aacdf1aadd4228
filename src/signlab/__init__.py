"""signlab: train, evaluate and deploy sign language models from video or pose.

The public API is imported lazily, so ``import signlab.extract`` (worker processes) and the CLI
do not pay for Lightning until they train.
"""

from importlib import import_module

__version__ = "0.1.0"

_API = {
    "Config": "signlab.config", "builtin_config": "signlab.config", "load_config": "signlab.config",
    "Sample": "signlab.data.manifest", "read_manifest": "signlab.data.manifest", "read_manifests": "signlab.data.manifest",
    "CorpusSpec": "signlab.data.synthetic", "generate_corpus": "signlab.data.synthetic",
    "SignlabError": "signlab.errors",
    "load_bundle": "signlab.inference.bundle",
    "Recognizer": "signlab.inference.recognizer", "evaluate": "signlab.inference.recognizer",
    "HybridCTCAttentionModel": "signlab.models", "TCNCTCModel": "signlab.models",
    "train": "signlab.training.run",
    "get_task": "signlab.tasks", "load_predictor": "signlab.tasks", "export_bundle": "signlab.tasks",
    "Vocabulary": "signlab.vocab",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'signlab' has no attribute {name!r}")
