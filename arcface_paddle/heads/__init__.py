"""Classification heads: the combined margin (`margin.py`) and class-parallel Partial FC.

The head turns embeddings into scaled logits; the backbone never sees labels.
"""
