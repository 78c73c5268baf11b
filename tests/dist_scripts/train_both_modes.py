"""Launched by tests/test_static.py (1 or 2 ranks): the trainer on the tiny config, in dynamic
and in static mode, for each backbone (MobileFaceNet with batch norm, PlainNet without) and
sample ratio; each run writes its log and final checkpoint to OUT/<backbone>_<ratio>_<mode>.

    PYTHONPATH=.:tests python -m paddle.distributed.launch --nproc_per_node 2 \
        tests/dist_scripts/train_both_modes.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from arcface_paddle.config import load_config
from arcface_paddle.train import train
from dist_scripts import tiny_backbones

REPO = Path(__file__).resolve().parents[2]
STEPS = 20
BACKBONES = ("MobileFaceNet", "PlainNet")
SAMPLE_RATIOS = ("1.0", "0.5")
MODES = ("dynamic", "static")
#: per rank; small so that MobileFaceNet's 20 steps stay short on two CPU cores
BATCH = 4


def run_name(backbone: str, ratio: str, mode: str) -> str:
    return f"{backbone}_{ratio}_{mode}"


def main() -> None:
    out = Path(sys.argv[1])
    tiny_backbones.register()
    for backbone in BACKBONES:
        for ratio in SAMPLE_RATIOS:
            for mode in MODES:
                train(load_config(REPO / "configs" / "tiny_cpu.py", [
                    ("backbone", backbone), ("sample_ratio", ratio),
                    ("is_static", str(mode == "static")), ("max_steps", str(STEPS)),
                    ("batch_size", str(BATCH)), ("checkpoint_interval_step", "0"),
                    ("log_interval_step", "10"),
                    ("output", str(out / run_name(backbone, ratio, mode)))]))


if __name__ == "__main__":
    main()
