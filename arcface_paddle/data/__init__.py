"""Training data: readers for the on-disk formats and the datasets built over them.

Modules are imported directly (`from arcface_paddle.data.recordio import ...`); this package
file stays empty so importing one reader never drags in the others.
"""
