"""Builds the runtime wheel `insightface-paddle`; the training library is not shipped in it."""

from __future__ import annotations

import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def read_version() -> str:
    text = (HERE / "insightface_paddle" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise RuntimeError("insightface_paddle/__init__.py has no __version__")
    return match.group(1)


setup(
    name="insightface-paddle",
    version=read_version(),
    description="Face detection (BlazeFace) and index-based recognition on PaddlePaddle",
    # the wheel's own page: the repository README is about the checkout (training, data tools)
    long_description=(HERE / "docs" / "wheel_description.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",  # the pinned, tested set (numpy 2.4) needs 3.11
    packages=["insightface_paddle"],
    # the sha256 sums the demo photo download is checked against
    package_data={"insightface_paddle": ["demo_photos.sha256"]},
    # Paddle itself is deliberately not listed: users pick `paddlepaddle` (CPU) or
    # `paddlepaddle-gpu` (their CUDA) and installing one must not pull in the other.
    install_requires=[
        "numpy>=1.21",
        "opencv-python-headless>=4.5",
        "tqdm>=4.60",
        "prettytable>=3.0",
        "PyYAML>=5.4",
        "threadpoolctl>=3.1",  # exact search pins BLAS to one thread per scan worker
    ],
    extras_require={
        "cpu": ["paddlepaddle>=3.0"],
        "onnx": ["onnxruntime>=1.16"],
        "faiss": ["faiss-cpu>=1.7"],
    },
    entry_points={"console_scripts": ["insightfacepaddle=insightface_paddle.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
