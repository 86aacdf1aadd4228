"""Manifests, feature files, statistics, datasets and the synthetic signer.

Data code never imports models.
"""
