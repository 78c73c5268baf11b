"""Facial keypoints for alignment: MediaPipe's short-range BlazeFace written in Paddle, and the
converter that reads its published `.tflite` weights into an inference model folder."""

from .blazeface_short import BlazeFaceShortRange
from .convert import convert_mediapipe_face

__all__ = ["BlazeFaceShortRange", "convert_mediapipe_face"]
