"""Validation inside multi-rank training: every rank embeds a share, nobody times out, and the
accuracy is the one a single process logs; unusable sets stop the run before its first step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arcface_paddle.data.datasets import synthetic_verification_pairs
from arcface_paddle.data.verification_bin import save_verification_bin
from arcface_paddle.errors import ArcFaceError
from arcface_paddle.logging import LOG_FILE
from arcface_paddle.train import main
from dist_scripts import tiny_backbones
from dist_scripts.launching import run_launched

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny_cpu.py"
SCRIPT = REPO / "tests" / "dist_scripts" / "run_train.py"


def train_args(output: Path, val_dir: Path, batch_size: int) -> list[str]:
    return ["--config_file", str(TINY), "--backbone", "PlainNet", "--embedding_size", "16",
            "--num_classes", "8", "--synthetic_images_per_class", "4", "--batch_size",
            str(batch_size), "--max_steps", "4", "--validation_interval_step", "2",
            "--val_dir", str(val_dir), "--val_targets", "synth600", "--val_batch_size", "100",
            "--checkpoint_interval_step", "4", "--output", str(output)]


def validations(output: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (output / LOG_FILE).read_text().splitlines()]
    return [(r["step"], r["validation"]["synth600"]) for r in records if "validation" in r]


@pytest.mark.slow
def test_two_ranks_validate_a_600_pair_set_like_one_rank(tmp_path):
    tiny_backbones.register()
    val_dir = tmp_path / "val"
    images, issame = synthetic_verification_pairs(600, seed=4)
    save_verification_bin(val_dir / "synth600.bin", images, issame)

    two = tmp_path / "two_ranks"
    run_launched(2, tmp_path / "log", SCRIPT, *train_args(two, val_dir, 4), timeout=400)
    assert (two / "checkpoints" / "step_00000004" / "meta.json").is_file()

    one = tmp_path / "one_rank"
    assert main(train_args(one, val_dir, 8)) == 0  # the same global batch of 8

    two_ranks, one_rank = validations(two), validations(one)
    assert [step for step, _ in two_ranks] == [2, 4] == [step for step, _ in one_rank]
    for (_, a), (_, b) in zip(two_ranks, one_rank, strict=True):
        assert a == pytest.approx(b, abs=1 / 600)


def test_a_set_the_protocol_cannot_score_stops_training_before_the_first_step(tmp_path):
    tiny_backbones.register()
    val_dir = tmp_path / "val"
    images, issame = synthetic_verification_pairs(2, seed=4)
    save_verification_bin(val_dir / "synth600.bin", images, issame)
    output = tmp_path / "run"
    with pytest.raises(ArcFaceError, match="synth600: 2 pairs"):
        main(train_args(output, val_dir, 8))
    assert not (output / LOG_FILE).exists() or validations(output) == []
    assert not (output / "checkpoints").exists()
