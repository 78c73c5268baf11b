"""Face backbones by name: images [B, 3, 112, 112] (RGB, (v - 127.5) / 127.5) -> embeddings [B, D].

Embeddings are not normalised; the head normalises them. Every backbone runs in dynamic mode,
under `paddle.jit.to_static` and exports with `paddle.jit.save` (InputSpec [None, 3, 112, 112]).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from paddle import nn

from ..errors import ArcFaceError
from .iresnet import FresResNet18, FresResNet34, FresResNet50, FresResNet100
from .mobilefacenet import MobileFaceNet, MobileFaceNet_128

BACKBONES: dict[str, Callable[..., nn.Layer]] = {
    "FresResNet18": FresResNet18,
    "FresResNet34": FresResNet34,
    "FresResNet50": FresResNet50,
    "FresResNet100": FresResNet100,
    "MobileFaceNet": MobileFaceNet,
    "MobileFaceNet_128": MobileFaceNet_128,
}


def build_backbone(name: str, embedding_size: int | None = None, **kwargs: Any) -> nn.Layer:
    """Construct a registered backbone; `embedding_size=None` keeps its own default (512, and
    128 for MobileFaceNet_128, which accepts no other size).

    Unknown names and options raise `ArcFaceError` listing the valid ones.
    """
    if name not in BACKBONES:
        raise ArcFaceError(f"unknown backbone {name!r}; valid names: {', '.join(BACKBONES)}")
    constructor = BACKBONES[name]
    options = set(inspect.signature(constructor).parameters) - {"embedding_size"}
    unknown = sorted(set(kwargs) - options)
    if unknown:
        valid = ", ".join(sorted(options)) or "none"
        raise ArcFaceError(f"backbone {name} has no option {', '.join(unknown)}; "
                           f"its options: embedding_size, {valid}")
    if embedding_size is not None:
        kwargs["embedding_size"] = int(embedding_size)
    return constructor(**kwargs)


__all__ = ["BACKBONES", "build_backbone"]
