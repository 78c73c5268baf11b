"""Configs: base <- job file <- typed `--key value` overrides; mistakes name the flag or file;
the resolved config is printed; the published anchors' settings are what the job files say."""

from __future__ import annotations

from pathlib import Path

import pytest

from arcface_paddle.command import run_main
from arcface_paddle.config import (
    config_from_argv,
    config_table,
    key_help,
    load_config,
    parse_value,
    split_argv,
)
from arcface_paddle.config import main as config_main
from arcface_paddle.errors import ArcFaceError
from arcface_paddle.train import main

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_overrides_are_parsed_to_the_declared_types():
    config = config_from_argv([
        "--config_file", str(CONFIGS / "ms1mv3_r50.py"), "--lr", "0.2", "--batch_size", "64",
        "--fp16=False", "--margin", "(1.0, 0.0, 0.4)", "--decay_boundaries", "8,14",
        "--val_targets", "lfw,agedb_30", "--max_steps", "100", "--checkpoint_dir", "none",
        "--output", "runs/x", "--margin_fallback", "linear"])
    assert config.lr == 0.2 and isinstance(config.lr, float)
    assert config.batch_size == 64 and isinstance(config.batch_size, int)
    assert config.fp16 is False
    assert config.margin == (1.0, 0.0, 0.4) and config.margin_fallback == "linear"
    assert load_config(None).margin_fallback == "psi"
    assert config.decay_boundaries == (8.0, 14.0)
    assert config.val_targets == ("lfw", "agedb_30")
    assert config.max_steps == 100 and config.checkpoint_dir is None
    assert config.output == "runs/x"
    assert config.backbone == "FresResNet50"  # from the job file
    assert config.momentum == 0.9  # from base
    assert parse_value("val_targets", "", {"val_targets": "tuple[str, ...]"}) == ()
    assert parse_value("fp16", "YES", {"fp16": "bool"}) is True


@pytest.mark.parametrize("argv, message", [
    (["--lrr", "0.1"], "unknown flag --lrr (did you mean --lr?)"),
    (["--lr", "fast"], "--lr expects float, got 'fast'"),
    (["--batch_size", "1.5"], "--batch_size expects int"),
    (["--fp16", "maybe"], "--fp16 expects bool"),
    (["--margin", "1,x,0"], "--margin expects tuple[float, ...]"),
    (["--max_steps", "ten"], "--max_steps expects int | None"),
    (["--lr"], "flag --lr has no value"),
    (["lr", "0.1"], "expected --key value, got 'lr'"),
    (["--config_file", "no/such.py"], "no such config file"),
])
def test_bad_flags_are_user_errors_naming_the_flag(argv, message):
    with pytest.raises(ArcFaceError) as caught:
        config_from_argv(argv)
    assert message in str(caught.value)


def test_bad_job_files_are_named(tmp_path):
    typo = tmp_path / "typo.py"
    typo.write_text("sample_rate = 0.1\n")
    with pytest.raises(ArcFaceError, match=r"typo.py: unknown key 'sample_rate' \(did you mean "
                                            "sample_ratio"):
        load_config(typo)
    wrong = tmp_path / "wrong.py"
    wrong.write_text("batch_size = '128'\n")
    with pytest.raises(ArcFaceError, match=r"wrong\.py: batch_size must be int"):
        load_config(wrong)
    broken = tmp_path / "broken.py"
    broken.write_text("lr = 1 / 0\n")
    with pytest.raises(ArcFaceError, match=r"broken\.py: cannot load config"):
        load_config(broken)


def test_every_shipped_config_loads():
    for path in sorted(CONFIGS.glob("*.py")):
        config = load_config(path)
        assert config.output and config.num_classes > 0, path


def test_anchor_configs_hold_the_published_settings():
    r50 = load_config(CONFIGS / "ms1mv3_r50.py")
    r100 = load_config(CONFIGS / "ms1mv3_r100.py")
    mobile = load_config(CONFIGS / "ms1mv2_mobileface.py")
    for config in (r50, r100):
        assert (config.num_classes, config.sample_ratio, config.fp16) == (93431, 0.1, True)
        assert config.embedding_size == 512 and config.margin == (1.0, 0.5, 0.0)
    assert (r50.backbone, r100.backbone) == ("FresResNet50", "FresResNet100")
    assert (mobile.backbone, mobile.embedding_size, mobile.num_classes,
            mobile.sample_ratio) == ("MobileFaceNet_128", 128, 85742, 1.0)
    for config in (r50, r100, mobile):
        assert (config.lr, config.momentum, config.weight_decay, config.batch_size) == (
            0.1, 0.9, 5e-4, 128)
        assert (config.train_unit, config.train_num, config.decay_boundaries) == (
            "epoch", 25, (10.0, 16.0, 22.0))


def test_config_file_and_key_value_forms():
    assert split_argv(["--config_file", "a.py", "--lr=0.3", "--seed", "1"]) == (
        "a.py", [("lr", "0.3"), ("seed", "1")])
    config = load_config(None).replace(lr=1)
    assert config.lr == 1.0 and isinstance(config.lr, float)
    with pytest.raises(ArcFaceError, match="replace"):
        load_config(None).replace(seed="x")


def test_resolved_config_table_lists_every_key():
    config = config_from_argv(["--config_file", str(CONFIGS / "tiny_cpu.py"), "--seed", "99"])
    table = config_table(config)
    for key in config:
        assert f"| {key} " in table
    assert "99" in table and "1.0, 0.2, 0.0" in table


def test_command_line_prints_errors_without_traceback(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, ["--config_file", str(CONFIGS / "tiny_cpu.py"), "--sample_ratio", "2"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "sample_ratio" in err and "Traceback" not in err
    for bad in (["--margin_fallback", "easy"],
                ["--margin", "1.35,0,0", "--margin_fallback", "linear"]):
        with pytest.raises(SystemExit) as exit_info:
            run_main(main, ["--config_file", str(CONFIGS / "tiny_cpu.py"), *bad])
        assert exit_info.value.code == 1
        err = capsys.readouterr().err
        assert err.startswith("error: margin_fallback") and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        run_main(main, ["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--init_loss_scaling float = 65536.0\n      starting loss scale" in out


def test_every_key_has_a_one_line_help_shown_by_train_help(capsys):
    """Issue 10, item 20: `--help` listed keys without their meaning. The meaning is the
    comment beside each default in configs/base.py; none may be missing."""
    meanings = key_help()
    config = load_config(None)
    assert list(meanings) == list(config)
    assert all(meanings[key] for key in config), [k for k in config if not meanings[k]]
    assert main(["--help", "--config_file", str(CONFIGS / "tiny_cpu.py")]) == 0
    out = capsys.readouterr().out
    for key in config:
        assert f"  --{key} {config.type_of(key)} = " in out and meanings[key] in out
    assert "--backbone str = MobileFaceNet\n" in out  # the job file's value, not base's
    assert max(map(len, out.splitlines())) <= 100


@pytest.mark.parametrize("argv, message", [
    (["--batch_size", "0"], "--batch_size must be an integer >= 1, got 0"),
    (["--embedding_size", "0"], "--embedding_size must be an integer >= 1, got 0"),
    (["--num_workers", "-1"], "--num_workers must be an integer >= 0, got -1"),
    (["--margin", "1"], "--margin must be three finite values"),
    (["--margin", "1,0.5,0,0"], "--margin must be three finite values"),
    (["--margin", "1,nan,0"], "--margin must be three finite values"),
    (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["--lr", "-0.1"], "--lr must be a finite number > 0"),
    (["--scale", "0"], "--scale must be a finite number > 0"),
    (["--sample_ratio", "0"], "--sample_ratio must be in (0, 1]"),
    (["--momentum", "1"], "--momentum must be in [0, 1)"),
    (["--weight_decay", "nan"], "--weight_decay must be a finite number >= 0"),
    (["--num_classes", "0"], "--num_classes must be an integer >= 1"),
    (["--max_steps", "0"], "--max_steps must be an integer >= 1"),
    (["--train_unit", "week"], "--train_unit must be one of epoch, step"),
    (["--decay_boundaries", "5,2"], "--decay_boundaries must be finite values >= 0 in incr"),
    (["--log_interval_step", "0"], "--log_interval_step must be an integer >= 1"),
    (["--seed", "-1"], "--seed must be an integer in [0, 2**32)"),
    (["--val_targets", "../etc/passwd"], "--val_targets must be names of"),
    (["--output", ""], "--output must be a folder (not empty)"),
    (["--init_loss_scaling", "0.5"], "--init_loss_scaling must lie between min_loss_scaling 1"),
])
def test_values_no_run_can_use_are_refused_up_front_naming_the_flag(argv, message):
    """Issue 10, item 2: these gave tracebacks or trained to NaN."""
    with pytest.raises(ArcFaceError) as caught:
        config_from_argv(["--config_file", str(CONFIGS / "tiny_cpu.py"), *argv])
    assert message in str(caught.value)


def test_bad_values_in_a_job_file_name_the_file(tmp_path):
    job = tmp_path / "job.py"
    job.write_text("batch_size = -4\n")
    with pytest.raises(ArcFaceError, match=r"job\.py: batch_size must be an integer >= 1, got -4"):
        load_config(job)
    with pytest.raises(ArcFaceError, match=r"replace\(\): lr must be a finite number > 0"):
        load_config(None).replace(lr=float("nan"))


def test_scripts_ask_for_resolved_values(capsys, tmp_path):
    """`python -m arcface_paddle.config KEY ...`: what scripts/train_dynamic.sh uses to find
    the run's output folder (and to refuse bad flags and paths before launching ranks)."""
    tiny = ["--config_file", str(CONFIGS / "tiny_cpu.py")]
    assert config_main(["output", *tiny]) == 0
    assert capsys.readouterr().out == "./output/tiny_cpu\n"
    assert config_main(["output", *tiny, "--output", "runs/x"]) == 0
    assert capsys.readouterr().out == "runs/x\n"
    with pytest.raises(ArcFaceError, match="unknown key 'outptu'"):
        config_main(["outptu"])
    with pytest.raises(ArcFaceError, match="--batch_size must be"):
        config_main(["output", "--batch_size", "0"])
    with pytest.raises(ArcFaceError, match=r"--data_dir .*nowhere: no such folder"):
        config_main(["output", *tiny, "--data_dir", str(tmp_path / "nowhere")])
    (tmp_path / "file").write_text("x")
    with pytest.raises(ArcFaceError, match=r"--output .*file/run: .*file is not a folder"):
        config_main(["output", *tiny, "--output", str(tmp_path / "file" / "run")])
    assert not (tmp_path / "nowhere").exists() and sorted(tmp_path.iterdir()) == [
        tmp_path / "file"]  # nothing made


def test_a_data_folder_on_the_command_line_replaces_a_job_files_synthetic_data():
    """Issue 10, item 3: tiny_cpu.py pins synthetic data, and --data_dir was silently
    ignored. Now the folder is used (format detected), or the run says why not."""
    tiny = ["--config_file", str(CONFIGS / "tiny_cpu.py")]
    assert load_config(CONFIGS / "tiny_cpu.py").data_format == "synthetic"
    config = config_from_argv([*tiny, "--data_dir", "my_faces"])
    assert (config.data_format, config.data_dir) == ("auto", "my_faces")
    config = config_from_argv([*tiny, "--label_file", "my_faces/list.txt"])
    assert config.data_format == "auto"
    assert config_from_argv([*tiny, "--data_dir", "d", "--data_format", "packed"]
                            ).data_format == "packed"
    with pytest.raises(ArcFaceError, match="--data_dir d: synthetic data reads no files"):
        config_from_argv([*tiny, "--data_dir", "d", "--data_format", "synthetic"])
