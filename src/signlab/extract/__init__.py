"""From videos to features: decoding (PyAV), MediaPipe Holistic, I3D, batch extraction over
corpora, and one video's features for a bundle's feature kind.

Imports the leaf modules and :mod:`signlab.data` (the ``.pose`` writer); nothing above.
"""
