"""Training configuration: `configs/base.py` merged with a job's config module and `--key value`
command-line overrides.

Base declares every key, its default and (as an annotation) its type; a job config or a flag
may only set declared keys, with values of the declared type. Mistakes raise `ArcFaceError`
naming the file or the flag.
"""

from __future__ import annotations

import difflib
import runpy
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from prettytable import PrettyTable

from .errors import ArcFaceError

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


def load_config(config_file: str | Path | None = None,
                overrides: Sequence[tuple[str, str]] = (), base: Path = BASE_CONFIG) -> Config:
    """base <- job config file <- command-line overrides, each checked against base's types."""
    values, types = _module_values(Path(base))
    missing = sorted(set(values) - set(types))
    if missing:
        raise ArcFaceError(f"{base}: keys without a type annotation: {', '.join(missing)}")
    values = {k: check_value(k, v, types, str(base)) for k, v in values.items()}
    if config_file is not None:
        job_values, _ = _module_values(Path(config_file))
        for key, value in job_values.items():
            values[key] = check_value(key, value, types, str(config_file))
    for key, text in overrides:
        values[key] = parse_value(key, text, types)
    return Config(values, types)


def config_from_argv(argv: Sequence[str]) -> Config:
    config_file, overrides = split_argv(argv)
    return load_config(config_file, overrides)


def config_table(config: Config) -> str:
    """The resolved configuration as a two-column table, for the start of a run's log."""
    table = PrettyTable(["key", "value"], align="l")
    for key in config:
        value = config[key]
        table.add_row([key, ", ".join(map(str, value)) if isinstance(value, tuple) else value])
    return table.get_string()
