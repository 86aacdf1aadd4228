"""Manifests, feature files (``.npy``, ``.pose``), scanning with exclusions, statistics, datasets,
samplers, augmentation and the synthetic signer.

Imports only the leaf modules (:mod:`signlab.errors`, :mod:`signlab.atomic`, :mod:`signlab.vocab`,
:mod:`signlab.config`, :mod:`signlab.kinds`, :mod:`signlab.pose`): never models, decoding,
extraction, training or inference (``tests/test_architecture.py`` checks).
"""
