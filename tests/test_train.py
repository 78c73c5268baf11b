"""End-to-end training on CPU: the tiny config learns synthetic identities that verify on a
held-out `.bin`, and a two-rank run killed after a checkpoint resumes on one rank.

The tiny config names MobileFaceNet (about 2 s a step here); these tests swap in the
registered test backbone TinyFaceNet (tests/dist_scripts/tiny_backbones.py) to stay fast.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import paddle
import pytest

from arcface_paddle.amp import DynamicLossScaler
from arcface_paddle.backbones import build_backbone
from arcface_paddle.checkpoint import load_checkpoint, read_meta
from arcface_paddle.config import load_config
from arcface_paddle.data.datasets import synthetic_verification_pairs
from arcface_paddle.data.verification_bin import load_verification_bin, save_verification_bin
from arcface_paddle.evaluation.bin_eval import evaluate_verification_set, paddle_layer_embed_fn
from arcface_paddle.heads.partial_fc import PartialFC
from arcface_paddle.logging import LOG_FILE, TEXT_LOG_FILE, TrainLogger
from arcface_paddle.train import build_run_schedule, main
from dist_scripts import tiny_backbones
from dist_scripts.launching import clean_env, kill_tree, start_launched, worker_logs
from dist_scripts.processes import wait_until_gone

DIST = Path(__file__).resolve().parent / "dist_scripts"

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny_cpu.py"


def read_log(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "train_log.jsonl").open()]


def test_a_restarted_log_holds_each_step_once(tmp_path, capsys):
    """Records past the step a run starts from are dropped (a crash left them; the run logs
    those steps again), atomically, and a line torn by the crash goes too."""
    path = tmp_path / LOG_FILE
    records = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5},
               {"step": 2, "validation": {"lfw": 0.9}}, {"step": 3, "loss": 2.0},
               {"step": 4, "validation": {"lfw": 0.95}}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 5, "lo')
    logger = TrainLogger(tmp_path, total_steps=6, global_batch=8, visualdl=False, start_step=2)
    assert "dropped 3 record(s) after step 2" in capsys.readouterr().out
    logger.step(3, 1.5, 0.1, 1.0, False, 0.25)
    logger.close()
    assert read_log(tmp_path) == [*records[:3], {"step": 3, "loss": 1.5, "lr": 0.1,
                                                 "loss_scale": 1.0, "skipped": False,
                                                 "step_time": 0.25}]
    # no temporary left behind; the human-readable lines also went to train.log
    assert sorted(p.name for p in tmp_path.iterdir()) == [TEXT_LOG_FILE, LOG_FILE]
    assert "dropped 3 record(s) after step 2" in (tmp_path / TEXT_LOG_FILE).read_text()
    # a fresh start (step 0) in the same folder starts a fresh log; other ranks touch nothing
    TrainLogger(tmp_path, 6, 8, visualdl=False, enabled=False).close()
    assert len(read_log(tmp_path)) == 4
    TrainLogger(tmp_path, 6, 8, visualdl=False).close()
    assert read_log(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_the_readme_cpu_command_trains_and_checkpoints(tmp_path, mode):
    """`DEVICE=cpu NPROC=2 sh scripts/train_<mode>.sh ...` itself, from another folder, with
    tiny settings as extra arguments: the documented commands must keep working, and do what
    the README says (issue 10, item 20): a VisualDL log in <output>/vdl, the launcher's logs
    under <output> (not ./log in the checkout), no LAUNCH INFO lines or ccache warning, and a
    console loss that says it is a mean."""
    output = tmp_path / "run"
    env = clean_env()
    env.pop("PYTHONPATH")  # the script and tools/train.py must find the package themselves
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    env.update(DEVICE="cpu", NPROC="2",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    env.pop("LOG_DIR", None)
    args = ["--max_steps", "2", "--embedding_size", "32", "--batch_size", "2",
            "--num_classes", "8", "--synthetic_images_per_class", "2", "--log_interval_step",
            "2", "--output", str(output)]
    before = set((REPO / "log").glob("*")) if (REPO / "log").is_dir() else set()
    result = subprocess.run(["sh", str(REPO / "scripts" / f"train_{mode}.sh"), *args],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    log_dir = output / "launch_log"
    assert result.returncode == 0, (f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}\n"
                                    f"{worker_logs(log_dir)}")
    log = read_log(output)
    assert [r["step"] for r in log] == [1, 2]
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in log)
    meta = read_meta(output / "checkpoints" / "step_00000002")
    assert (meta["step"], meta["world_size"], meta["global_batch"]) == (2, 2, 4)
    rank0 = (log_dir / "workerlog.0").read_text()
    assert "| backbone" in rank0 and "MobileFaceNet" in rank0  # configs/tiny_cpu.py was used
    assert f"{mode}-graph train step" in rank0
    mean = np.mean([r["loss"] for r in log])
    assert re.search(rf"step 2/2  loss {mean:.4f} \(mean of 2 steps\)", rank0), rank0[-2000:]
    assert list((output / "vdl").glob("vdlrecords.*"))  # the README lists it
    console = result.stdout + result.stderr
    assert "LAUNCH INFO" not in console and "ccache" not in console and "ccache" not in rank0
    assert console.lstrip().startswith("+--")  # the config table comes first
    after = set((REPO / "log").glob("*")) if (REPO / "log").is_dir() else set()
    assert after == before  # nothing written to ./log in the checkout


@pytest.mark.slow
def test_tiny_config_learns_identities_that_verify_on_a_held_out_bin(tmp_path, capsys):
    tiny_backbones.register()
    val_dir = tmp_path / "val"
    images, issame = synthetic_verification_pairs(300, seed=12345)
    save_verification_bin(val_dir / "synthetic_holdout.bin", images, issame)
    output = tmp_path / "run"
    argv = ["--config_file", str(TINY), "--backbone", "TinyFaceNet", "--batch_size", "32",
            "--output", str(output), "--val_dir", str(val_dir),
            "--val_targets", "synthetic_holdout", "--validation_interval_step", "60"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| backbone" in printed and "TinyFaceNet" in printed  # resolved config table
    assert "step 120/120" in printed

    log = read_log(output)
    losses = np.array([r["loss"] for r in log if "loss" in r])
    assert len(losses) == 120
    assert losses[-10:].mean() < 0.6 * losses[:10].mean()
    validations = [r["validation"]["synthetic_holdout"] for r in log if "validation" in r]
    assert len(validations) == 2  # steps 60 and 120
    trained_accuracy = validations[-1]

    # the same backbone untrained, scored the same way, is far worse
    paddle.seed(7)
    untrained = build_backbone("TinyFaceNet", 64)
    baseline = evaluate_verification_set(paddle_layer_embed_fn(untrained), load_verification_bin(
        val_dir / "synthetic_holdout.bin")).accuracy
    print(f"held-out verification: trained {trained_accuracy:.4f}, untrained {baseline:.4f}")
    assert trained_accuracy > 0.9
    assert trained_accuracy > baseline + 0.15


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(child) for child in text]
    return found


def kill_workers(launcher: subprocess.Popen, script_name: str) -> None:
    """SIGKILL the ranks this test's launcher started (a crash, not a clean stop), not their
    DataLoader workers: those must die with their rank."""
    for child in children_of(launcher.pid):
        try:
            if script_name in Path(f"/proc/{child}/cmdline").read_text(errors="replace"):
                os.kill(child, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass
    launcher.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("killed_static", ["false", "true"], ids=["dynamic", "static"])
def test_two_rank_run_killed_after_a_checkpoint_resumes_on_one_rank(tmp_path, killed_static):
    """Killed in either executor, resumed in dynamic mode on one process."""
    output = tmp_path / "run"
    flags = ["--config_file", str(TINY), "--backbone", "TinyFaceNet", "--output", str(output),
             "--train_num", "400", "--checkpoint_interval_step", "5", "--log_interval_step", "5",
             "--sample_ratio", "0.5", "--num_workers", "1", "--max_num_last_checkpoint", "3"]
    script = DIST / "run_train.py"
    launcher = start_launched(2, tmp_path / "log", script, *flags, "--is_static",
                              killed_static, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    checkpoints = output / "checkpoints"
    deadline = time.monotonic() + 240
    try:
        while not (checkpoints / "step_00000010" / "meta.json").exists():
            if launcher.poll() is not None:
                pytest.fail(f"training exited early\n{worker_logs(tmp_path / 'log')}")
            if time.monotonic() > deadline:
                pytest.fail(f"no checkpoint in time\n{worker_logs(tmp_path / 'log')}")
            time.sleep(0.2)
    finally:
        try:
            kill_workers(launcher, script.name)
            # the ranks' DataLoader workers (--num_workers 1) die with them: no orphan is left
            orphans = wait_until_gone(launcher.pid, None, [output])
        finally:
            kill_tree(launcher)
    assert launcher.returncode != 0
    assert orphans == [], [p.describe() for p in orphans]
    saved = sorted(p for p in checkpoints.glob("step_*") if (p / "meta.json").exists())[-1]
    saved_step = read_meta(saved)["step"]
    assert saved_step >= 10 and read_meta(saved)["world_size"] == 2
    logged_by_two = {r["step"]: r for r in read_log(output) if "loss" in r}

    resumed = subprocess.run([sys.executable, str(script), *flags, "--resume", "true",
                              "--max_steps", str(saved_step + 3), "--is_static", "false"],
                             cwd=REPO, env=clean_env(), capture_output=True, text=True,
                             timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    config = load_config(TINY, [("backbone", "TinyFaceNet"), ("train_num", "400")])
    schedule = build_run_schedule(config, global_batch=32, steps_per_epoch=64 * 16 // 32)
    assert (f"resumed from {saved} (saved by 2 ranks) at step {saved_step} on 1 ranks; "
            f"lr {schedule(saved_step):.8g}") in resumed.stdout
    steps = [r for r in read_log(output) if "loss" in r]
    # each step once: what the killed run logged after its checkpoint was dropped on resume
    assert [r["step"] for r in steps] == list(range(1, saved_step + 4))
    continued = steps[-3:]
    for record in continued:
        assert record["lr"] == schedule(record["step"] - 1)
        if record["step"] in logged_by_two:  # the killed run got there too: same lr
            assert record["lr"] == logged_by_two[record["step"]]["lr"]
    final = read_meta(checkpoints / f"step_{saved_step + 3:08d}")
    assert final["world_size"] == 1 and final["global_batch"] == 32

    # the one-rank Partial FC holds every class's centre and momentum exactly as saved
    tiny_backbones.register()
    backbone = build_backbone("TinyFaceNet", 64)
    optimizer = paddle.optimizer.Momentum(0.1, 0.9, parameters=backbone.parameters())
    head = PartialFC(64, 64, 0.5, rank=0, world_size=1)
    load_checkpoint(saved, backbone, optimizer, head, DynamicLossScaler(False))
    shards = [np.load(saved / f"partial_fc_{r:05d}.npz") for r in range(2)]
    assert [list(s["class_range"]) for s in shards] == [[0, 32], [32, 64]]
    np.testing.assert_array_equal(head.weight.numpy(),
                                  np.concatenate([s["weight"] for s in shards]))
    np.testing.assert_array_equal(head.velocity.numpy(),
                                  np.concatenate([s["velocity"] for s in shards]))
    assert np.abs(head.velocity.numpy()).max() > 0
