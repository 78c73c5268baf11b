"""insightface_paddle: face detection and index-based recognition on PaddlePaddle inference.

The runtime is a leaf package: it never imports the training library `arcface_paddle`.
"""

__version__ = "1.0.0"

from .api import Face, InsightFace
from .errors import InsightFaceError
from .index import Candidate, FaceIndex

__all__ = ["Candidate", "Face", "FaceIndex", "InsightFace", "InsightFaceError", "__version__"]
