"""arcface_paddle: training library for ArcFace-family face recognition on PaddlePaddle.

It may import the runtime package `insightface_paddle`; the runtime never imports it.
"""

__version__ = "1.0.0"
