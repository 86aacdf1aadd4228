"""Running trained bundles: the one bundle reader / writer, the gloss :class:`Recognizer` (with
evaluation and the decoder search), and the sentence engine in pieces (bank, decision,
calibration, engine, evaluation).

Imports the leaf modules, :mod:`signlab.data`, :mod:`signlab.models`, :mod:`signlab.decoding` and
:mod:`signlab.extract`; never training.
"""
