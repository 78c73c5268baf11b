"""insightface_paddle: face detection and index-based recognition on PaddlePaddle inference.

The runtime is a leaf package: it never imports the training library `arcface_paddle`.
"""

__version__ = "1.0.0"

from .errors import InsightFaceError

__all__ = ["InsightFaceError", "__version__"]
