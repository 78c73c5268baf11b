"""Warp a face onto the 112x112 ArcFace template by its landmarks: the crop recognition models
of this family were trained on.

A similarity transform (rotation, uniform scale, translation) is fitted by least squares over
the points (a closed form, reflections excluded, as Umeyama's), so a few noisy points cannot
shear the face as a full affine fit would. Coordinates follow OpenCV: (0, 0) is the centre of
the top left pixel.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import InsightFaceError

ALIGNED_SIZE = 112
#: where insightface's 112x112 training crops put the five landmarks: left eye, right eye (as
#: seen in the image), nose tip, left and right mouth corner
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
#: the template point of each keypoint name a landmark model may report ("right" is the
#: subject's right, on the image's left, as MediaPipe names them)
TEMPLATE_POINTS: dict[str, np.ndarray] = {
    "right_eye": ARCFACE_TEMPLATE[0],
    "left_eye": ARCFACE_TEMPLATE[1],
    "nose_tip": ARCFACE_TEMPLATE[2],
    "mouth_center": ARCFACE_TEMPLATE[3:5].mean(axis=0),
}


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity matrix mapping points `source` [N, 2] closest to `target` [N, 2] in
    least squares (N >= 2)."""
    src = np.asarray(source, np.float64)
    dst = np.asarray(target, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise InsightFaceError(f"similarity fit needs two [N>=2, 2] point sets, got {src.shape} "
                               f"and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    # points as complex numbers: the best scaled rotation is one complex factor c minimising
    # sum |c z - w|^2 (Umeyama's result without reflections, with no SVD)
    z = (src[:, 0] - src_mean[0]) + 1j * (src[:, 1] - src_mean[1])
    w = (dst[:, 0] - dst_mean[0]) + 1j * (dst[:, 1] - dst_mean[1])
    energy = float((z.real ** 2 + z.imag ** 2).sum())
    if energy <= 1e-12 * len(src):
        raise InsightFaceError("similarity fit: the source points coincide")
    c = (np.conj(z) * w).sum() / energy
    linear = np.array([[c.real, -c.imag], [c.imag, c.real]])
    translation = dst_mean - linear @ src_mean
    return np.hstack([linear, translation[:, None]]).astype(np.float32)


def warp_to_template(rgb: np.ndarray, points: np.ndarray, template: np.ndarray,
                     size: int = ALIGNED_SIZE) -> np.ndarray:
    """uint8 [H, W, 3] and its landmarks [N, 2] -> the aligned face [size, size, 3] (uint8;
    black outside the image)."""
    matrix = similarity_transform(points, template)
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
