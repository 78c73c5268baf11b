"""Training configuration: `configs/base.py` merged with a job's config module and `--key value`
command-line overrides.

Base declares every key, its default, (as an annotation) its type and (as the comment after it)
its one-line help; a job config or a flag may only set declared keys, with values of the
declared type. The resolved values are then checked against `RULES` (a positive batch size, a
margin of three values, a finite lr, ...), so a bad value is refused before any data or model is
touched. Mistakes raise `ArcFaceError` naming the file or the flag.
"""

from __future__ import annotations

import ast
import difflib
import io
import math
import runpy
import tokenize
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from prettytable import PrettyTable

from .errors import ArcFaceError, require_output_folder
from .lr import DECAYS, TRAIN_UNITS

BASE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "base.py"
CONFIG_FILE_FLAG = "--config_file"
TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")
NONE_WORDS = ("none", "null", "")
SCALARS = {"int": int, "float": float, "bool": bool, "str": str}


class Config(Mapping[str, Any]):
    """Read-only resolved configuration: `config.lr` or `config["lr"]`."""

    def __init__(self, values: dict[str, Any], types: dict[str, str]) -> None:
        self._values = dict(values)
        self._types = dict(types)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"config has no key {key!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def type_of(self, key: str) -> str:
        return self._types[key]

    def replace(self, **changes: Any) -> Config:
        """A copy with some keys changed (values checked like a config file's)."""
        values = dict(self._values)
        for key, value in changes.items():
            values[key] = check_value(key, value, self._types, "replace()")
        check_config(values, dict.fromkeys(changes, "replace()"))
        return Config(values, self._types)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples become lists."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._values.items()}


def _module_values(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    if not path.is_file():
        raise ArcFaceError(f"{CONFIG_FILE_FLAG}: no such config file: {path}")
    try:
        namespace = runpy.run_path(str(path))
    except Exception as exc:  # a config module is user code: report where it broke
        raise ArcFaceError(f"{path}: cannot load config: {exc}") from exc
    values = {k: v for k, v in namespace.items()
              if not k.startswith("_") and not callable(v) and not isinstance(v, type(runpy))
              and type(v).__module__ != "__future__"}
    annotations = {k: str(v) for k, v in namespace.get("__annotations__", {}).items()}
    return values, annotations


def _suggest(key: str, known: Sequence[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def _unknown(key: str, types: Mapping[str, str], where: str) -> ArcFaceError:
    return ArcFaceError(f"{where}: unknown key {key!r}{_suggest(key, list(types))}")


def check_value(key: str, value: Any, types: Mapping[str, str], where: str) -> Any:
    """A Python value from a config file -> the value, normalised (lists to tuples, ints to
    floats) if it fits the declared type of `key`."""
    if key not in types:
        raise _unknown(key, types, where)
    declared = types[key]
    optional = declared.endswith(" | None")
    kind = declared.removesuffix(" | None")
    if value is None and optional:
        return None
    if kind.startswith("tuple["):
        item = kind[len("tuple["):].split(",")[0].strip()
        if isinstance(value, (list, tuple)):
            return tuple(_check_scalar(key, v, item, where) for v in value)
    elif kind in SCALARS:
        return _check_scalar(key, value, kind, where)
    raise ArcFaceError(f"{where}: {key} must be {declared}, got {value!r}")


def _check_scalar(key: str, value: Any, kind: str, where: str) -> Any:
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, SCALARS[kind]) and not (kind == "int" and isinstance(value, bool)):
        return value
    raise ArcFaceError(f"{where}: {key} must be {kind}, got {value!r}")


def parse_value(key: str, text: str, types: Mapping[str, str]) -> Any:
    """The text of `--key text` -> a value of the declared type, or an error naming the flag."""
    flag = f"--{key}"
    if key not in types:
        raise ArcFaceError(f"unknown flag {flag}{_suggest(key, list(types), '--')}")
    declared = types[key]
    kind = declared.removesuffix(" | None")
    if declared.endswith(" | None") and text.strip().lower() in NONE_WORDS:
        return None
    if kind.startswith("tuple["):
        item = kind[len("tuple["):].split(",")[0].strip()
        body = text.strip().strip("()[]")
        parts = [p.strip().strip("'\"") for p in body.split(",") if p.strip()]
        return tuple(_parse_scalar(flag, p, item, declared) for p in parts)
    return _parse_scalar(flag, text, kind, declared)


def _parse_scalar(flag: str, text: str, kind: str, declared: str) -> Any:
    word = text.strip()
    try:
        if kind == "bool":
            if word.lower() in TRUE_WORDS:
                return True
            if word.lower() in FALSE_WORDS:
                return False
            raise ValueError(word)
        if kind == "int":
            return int(word)
        if kind == "float":
            return float(word)
        return text
    except ValueError:
        raise ArcFaceError(f"{flag} expects {declared}, got {text!r}") from None


def split_argv(argv: Sequence[str]) -> tuple[str | None, list[tuple[str, str]]]:
    """`--config_file F --a 1 --b=2` -> ("F", [("a", "1"), ("b", "2")])."""
    config_file = None
    pairs: list[tuple[str, str]] = []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--") or item == "--":
            raise ArcFaceError(f"expected --key value, got {item!r}")
        if "=" in item:
            key, text = item[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(items):
                raise ArcFaceError(f"flag {item} has no value")
            key, text = item[2:], items[i + 1]
            i += 2
        if f"--{key}" == CONFIG_FILE_FLAG:
            config_file = text
        else:
            pairs.append((key, text))
    return config_file, pairs


# -- value rules: what each key may hold beyond its type ----------------------------------------
Rule = tuple[Callable[[Any], bool], str]


def _finite_above(low: float, inclusive: bool = False) -> Rule:
    return ((lambda v: math.isfinite(v) and (v >= low if inclusive else v > low)),
            f"a finite number {'>=' if inclusive else '>'} {low:g}")


def _at_least(low: int) -> Rule:
    return (lambda v: v >= low), f"an integer >= {low}"


def _one_of(choices: Sequence[str]) -> Rule:
    return (lambda v: v in choices), f"one of {', '.join(choices)}"


def _plain_name(value: str) -> bool:
    return bool(value) and not any(ch in value for ch in "/\\\0") and value not in (".", "..")


def _boundaries(values: tuple[float, ...]) -> bool:
    return all(math.isfinite(v) and v >= 0 for v in values) and list(values) == sorted(values)


#: key -> (test of its resolved value, what the value must be); None passes where the type
#: allows it. Keys whose type says it all (bools, free paths) have no rule.
RULES: dict[str, Rule] = {
    "backbone": (bool, "a backbone name"),
    "embedding_size": _at_least(1),
    "dropout": ((lambda v: 0.0 <= v < 1.0), "in [0, 1)"),
    "margin": ((lambda v: len(v) == 3 and all(map(math.isfinite, v)) and v[0] > 0),
               "three finite values m1,m2,m3 with m1 > 0"),
    "scale": _finite_above(0),
    "sample_ratio": ((lambda v: 0.0 < v <= 1.0), "in (0, 1]"),
    "init_loss_scaling": _finite_above(0),
    "incr_ratio": _finite_above(1, inclusive=True),
    "incr_every_n_steps": _at_least(1),
    "decr_ratio": ((lambda v: 0.0 < v <= 1.0), "in (0, 1]"),
    "min_loss_scaling": _finite_above(0),
    "max_loss_scaling": _finite_above(0),
    "lr": _finite_above(0),
    "momentum": ((lambda v: 0.0 <= v < 1.0), "in [0, 1)"),
    "weight_decay": _finite_above(0, inclusive=True),
    "train_unit": _one_of(TRAIN_UNITS),
    "train_num": _at_least(1),
    "warmup_num": _finite_above(0, inclusive=True),
    "lr_decay_type": _one_of(DECAYS),
    "decay_boundaries": (_boundaries, "finite values >= 0 in increasing order"),
    "lr_decay": _finite_above(0),
    "poly_power": _finite_above(0),
    "max_steps": _at_least(1),
    "data_dir": (bool, "a folder (not empty)"),
    "label_file": (bool, "a file (not empty)"),
    "num_classes": _at_least(1),
    "synthetic_images_per_class": _at_least(1),
    "batch_size": _at_least(1),
    "num_workers": _at_least(0),
    "seed": ((lambda v: 0 <= v < 2**32), "an integer in [0, 2**32)"),
    "val_targets": ((lambda v: all(map(_plain_name, v))), "names of <val_dir>/<name>.bin files"),
    "validation_interval_step": _at_least(0),
    "val_batch_size": _at_least(1),
    "output": (bool, "a folder (not empty)"),
    "log_interval_step": _at_least(1),
    "checkpoint_interval_step": _at_least(0),
    "max_num_last_checkpoint": _at_least(0),
}


def _where(key: str, sources: Mapping[str, str]) -> str:
    source = sources.get(key, "config")
    return f"--{key}" if source == "flag" else f"{source}: {key}"


def check_config(values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """Refuse a value no run can use, naming the flag or file it came from. `sources`: key ->
    "flag" or the file that set it."""
    for key, (test, what) in RULES.items():
        value = values.get(key)
        if value is not None and not test(value):
            raise ArcFaceError(f"{_where(key, sources)} must be {what}, got {value!r}")
    low, start, high = (values[k] for k in ("min_loss_scaling", "init_loss_scaling",
                                            "max_loss_scaling"))
    if not low <= start <= high:
        raise ArcFaceError(f"{_where('init_loss_scaling', sources)} must lie between "
                           f"min_loss_scaling {low:g} and max_loss_scaling {high:g}, "
                           f"got {start:g}")


def load_config(config_file: str | Path | None = None,
                overrides: Sequence[tuple[str, str]] = (), base: Path = BASE_CONFIG) -> Config:
    """base <- job config file <- command-line overrides, each checked against base's types,
    then the result against `RULES`."""
    values, types = _module_values(Path(base))
    missing = sorted(set(values) - set(types))
    if missing:
        raise ArcFaceError(f"{base}: keys without a type annotation: {', '.join(missing)}")
    values = {k: check_value(k, v, types, str(base)) for k, v in values.items()}
    sources = dict.fromkeys(values, str(base))
    if config_file is not None:
        job_values, _ = _module_values(Path(config_file))
        for key, value in job_values.items():
            values[key] = check_value(key, value, types, str(config_file))
            sources[key] = str(config_file)
    for key, text in overrides:
        values[key] = parse_value(key, text, types)
        sources[key] = "flag"
    _use_data_given_on_the_command_line(values, sources)
    check_config(values, sources)
    return Config(values, types)


def _use_data_given_on_the_command_line(values: dict[str, Any], sources: dict[str, str]) -> None:
    """A job file's synthetic data gives way to a data folder named on the command line
    (data_format becomes "auto": detected from the folder); both named there is a mistake."""
    given = [key for key in ("data_dir", "label_file")
             if sources.get(key) == "flag" and values[key] is not None]
    if not given or values["data_format"] != "synthetic":
        return
    if sources.get("data_format") == "flag":
        raise ArcFaceError(f"--{given[0]} {values[given[0]]}: synthetic data reads no files; "
                           f"drop --{given[0]} or set --data_format auto")
    values["data_format"] = "auto"
    sources["data_format"] = "flag"


def config_from_argv(argv: Sequence[str]) -> Config:
    config_file, overrides = split_argv(argv)
    return load_config(config_file, overrides)


def check_paths(config: Config) -> None:
    """What a run reads and writes, checked before any data, model or rank starts and without
    creating anything: the data folder holds a dataset or the label file can be read (unless
    the data is synthetic), and the output folder can be made and written in."""
    from .data.datasets import detect_format

    if config.data_format != "synthetic":
        detect_format(config.data_dir, config.label_file)
        if config.label_file is not None:
            try:
                with open(config.label_file, "rb"):
                    pass
            except OSError as exc:
                raise ArcFaceError(f"--label_file {config.label_file}: cannot read "
                                   f"({exc.strerror or exc})") from None
    require_output_folder(config.output, "--output")


def _shown(value: Any) -> Any:
    return ", ".join(map(str, value)) if isinstance(value, tuple) else value


def config_table(config: Config) -> str:
    """The resolved configuration as a two-column table, for the start of a run's log."""
    table = PrettyTable(["key", "value"], align="l")
    for key in config:
        table.add_row([key, _shown(config[key])])
    return table.get_string()


def key_help(base: Path = BASE_CONFIG) -> dict[str, str]:
    """Each key of `base` -> the comment that ends its line (its help), or "" when it has none.

    The comment sits beside the default it explains, so the two cannot drift apart."""
    source = Path(base).read_text(encoding="utf-8")
    comments = {token.start[0]: token.string.lstrip("#").strip()
                for token in tokenize.generate_tokens(io.StringIO(source).readline)
                if token.type == tokenize.COMMENT}
    return {node.target.id: comments.get(node.end_lineno or node.lineno, "")
            for node in ast.parse(source).body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}


def help_table(config: Config) -> str:
    """Every key as a flag with its type, its value in `config` (the defaults, or a job file's)
    and, indented below, what it means: the body of `tools/train.py --help`."""
    meanings = key_help()
    return "\n".join(f"  --{key} {config.type_of(key)} = {_shown(config[key])}\n"
                     f"      {meanings.get(key, '')}" for key in config)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m arcface_paddle.config KEY [--config_file F] [--key value ...]` prints the
    resolved value of KEY after every check, the paths' too (`check_paths`): how shell scripts
    learn, say, the run's output folder, and refuse a bad flag, a missing data folder or an
    unwritable output once, before launching any rank."""
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0].startswith("-"):
        raise ArcFaceError("usage: python -m arcface_paddle.config KEY [--config_file FILE] "
                           "[--key value ...]")
    config = config_from_argv(argv[1:])
    if argv[0] not in config:
        raise _unknown(argv[0], {k: "" for k in config}, "python -m arcface_paddle.config")
    check_paths(config)
    print(_shown(config[argv[0]]))
    return 0


if __name__ == "__main__":
    from .command import run_main

    run_main(main)
