"""The static-graph executor (engine/static.py): a real program, the same numbers as dynamic
mode, and a killed static run that resumes exactly. (A static run resumed in dynamic mode on
one process: tests/test_train.py; checkpoints across executors: tests/test_checkpoint.py.)

Equivalence: the trainer on the tiny config (MobileFaceNet, batch norm included) and on a
backbone without batch norm, at sample_ratio 1.0 and 0.5, on 1 and 2 CPU processes: the first
20 losses agree within 1e-4 relative, the final backbone and class centres within 1e-4.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np
import paddle
import pytest

from arcface_paddle.amp import DynamicLossScaler
from arcface_paddle.checkpoint import read_meta
from arcface_paddle.engine.static import build_static_step, program_ops
from arcface_paddle.heads.partial_fc import PartialFC, SampledMomentum
from dist_scripts import train_both_modes as both
from dist_scripts.launching import kill_tree, run_launched, start_launched, worker_logs
from dist_scripts.tiny_backbones import TinyFaceNet

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "tests" / "dist_scripts"
TINY = REPO / "configs" / "tiny_cpu.py"


def read_log(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "train_log.jsonl").open()
            if "loss" in line]


def test_the_program_holds_forward_and_backward_and_serves_every_batch():
    paddle.seed(0)
    backbone = TinyFaceNet(16)
    eager_forward = backbone.forward
    head = PartialFC(37, 16, 0.5, seed=3)
    optimizer = paddle.optimizer.Momentum(0.1, 0.9, parameters=backbone.parameters())
    step = build_static_step(backbone, head, optimizer, SampledMomentum(),
                             DynamicLossScaler(True))
    for batch in (4, 6, 4):  # other batch sizes and other numbers of sampled centres
        result = step(paddle.randn([batch, 3, 112, 112]), paddle.randint(0, 37, [batch]))
        assert np.isfinite(result.loss)
    assert step.forward.get_traced_count() == 1  # one program for every step, no retrace
    ops = program_ops(step)
    assert ops.count("pd_op.conv2d") == 4 and ops.count("pd_op.conv2d_grad") == 4
    assert "pd_op.batch_norm_" in ops or "pd_op.batch_norm" in ops
    assert "pd_op.matmul_grad" in ops and "pd_op.pylayer" in ops
    # the backbone itself stays eager: validation and export call it as a plain Layer
    assert backbone.forward == eager_forward
    assert not isinstance(backbone(paddle.randn([1, 3, 112, 112])), paddle.pir.Value)


@pytest.mark.slow
def test_the_program_holds_the_collectives_on_two_ranks(tmp_path):
    run_launched(2, tmp_path / "log", DIST / "static_program_ranks.py", str(tmp_path))
    runs = [json.loads((tmp_path / f"ops_rank{r}.json").read_text()) for r in range(2)]
    for run in runs:
        ops = run["ops"]
        assert run["traced"] == 1
        assert ops.count("pd_op.conv2d") == 1 and ops.count("pd_op.conv2d_grad") == 1
        # features all-gathered; max, sum and positive all-reduced; the gradient summed back
        assert ops.count("pd_op.all_gather") == 1
        assert sum(op.startswith("pd_op.all_reduce") for op in ops) == 4
    assert runs[0]["losses"] == runs[1]["losses"]  # a global-batch loss, equal on each rank


@pytest.fixture(scope="module", params=[1, 2], ids=lambda n: f"{n}proc")
def both_modes(request, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp(f"both_modes_{request.param}proc")
    run_launched(request.param, out / "log", DIST / "train_both_modes.py", str(out),
                 timeout=1200)
    return out


def assert_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Within 1e-4 relative to the tensor's magnitude."""
    np.testing.assert_allclose(actual, expected, rtol=1e-4,
                               atol=1e-4 * float(np.abs(expected).max()), err_msg=what)


@pytest.mark.slow
@pytest.mark.parametrize("ratio", both.SAMPLE_RATIOS)
@pytest.mark.parametrize("backbone", both.BACKBONES)
def test_static_and_dynamic_training_agree(both_modes, backbone, ratio):
    runs = {mode: both_modes / both.run_name(backbone, ratio, mode) for mode in both.MODES}
    logs = {mode: read_log(path) for mode, path in runs.items()}
    losses = {mode: np.array([r["loss"] for r in log]) for mode, log in logs.items()}
    assert len(losses["static"]) == both.STEPS == len(losses["dynamic"])
    np.testing.assert_allclose(losses["static"], losses["dynamic"], rtol=1e-4)
    assert [r["lr"] for r in logs["static"]] == [r["lr"] for r in logs["dynamic"]]
    assert np.ptp(losses["dynamic"]) > 0  # batches differ: the losses are not a constant
    checkpoints = {mode: path / "checkpoints" / f"step_{both.STEPS:08d}"
                   for mode, path in runs.items()}
    meta = read_meta(checkpoints["static"])
    files = ["backbone.npz", *(shard["file"] for shard in meta["partial_fc"])]
    for name in files:
        with np.load(checkpoints["static"] / name) as s, \
                np.load(checkpoints["dynamic"] / name) as d:
            assert s.files == d.files
            for key in s.files:
                if s[key].dtype.kind == "f":
                    assert_close(s[key], d[key], f"{name}:{key}")
                else:
                    np.testing.assert_array_equal(s[key], d[key], err_msg=f"{name}:{key}")


def kill_after_checkpoint(launcher: subprocess.Popen, checkpoint: Path, log_dir: Path) -> None:
    """Wait for `checkpoint` to be complete, then SIGKILL the whole launch."""
    deadline = time.monotonic() + 300
    try:
        while not (checkpoint / "meta.json").exists():
            if launcher.poll() is not None:
                pytest.fail(f"training exited early\n{worker_logs(log_dir)}")
            if time.monotonic() > deadline:
                pytest.fail(f"no checkpoint in time\n{worker_logs(log_dir)}")
            time.sleep(0.05)
    finally:
        kill_tree(launcher)


def train_flags(output: Path, *extra: str) -> list[str]:
    return ["--config_file", str(TINY), "--backbone", "TinyFaceNet", "--output", str(output),
            "--train_num", "400", "--checkpoint_interval_step", "5", "--log_interval_step", "5",
            "--sample_ratio", "0.5", "--is_static", "true", "--max_num_last_checkpoint", "10",
            *extra]


@pytest.mark.slow
def test_a_killed_static_run_resumes_in_static_mode_with_the_same_next_losses(tmp_path):
    script = DIST / "run_train.py"
    straight = tmp_path / "straight"
    run_launched(2, tmp_path / "log_straight", script, *train_flags(straight, "--max_steps",
                                                                       "20"))
    expected = {r["step"]: r for r in read_log(straight)}

    output = tmp_path / "killed"
    launcher = start_launched(2, tmp_path / "log_killed", script, *train_flags(output),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_after_checkpoint(launcher, output / "checkpoints" / "step_00000005",
                          tmp_path / "log_killed")
    saved = sorted(p for p in (output / "checkpoints").glob("step_*")
                   if (p / "meta.json").exists())[-1]
    saved_step = read_meta(saved)["step"]
    assert saved_step + 5 <= 20, "the run went too far before it was killed"
    run_launched(2, tmp_path / "log_resumed", script, *train_flags(
        output, "--resume", "true", "--max_steps", str(saved_step + 5)))
    resumed = [r for r in read_log(output) if r["step"] > saved_step]
    assert [r["step"] for r in resumed] == list(range(saved_step + 1, saved_step + 6))
    for record in resumed:
        want = expected[record["step"]]
        assert (record["loss"], record["lr"]) == (want["loss"], want["lr"]), record["step"]
