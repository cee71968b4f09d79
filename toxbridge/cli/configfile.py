"""The config file: TOML text -> the same option values the command line gives.

Pure: the caller reads the file and passes its text, and describes the options with a
table of ``Option`` (``toxbridge.nodeargs`` builds it from the node's argparse parser, so
every flag is a key and no key exists without its flag). Each key is a long option without
its ``--`` (``bridge-port = 0`` is ``--bridge-port 0``); values are checked with the flag's
own converter. Every error is a ``ConfigError`` that names the file, the key and what is
wrong.
"""

from __future__ import annotations

import argparse
import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import ConfigError

__all__ = ["Option", "parse_config", "load_config"]

KINDS = ("bool", "int", "str", "list")
_TOML_TYPE = {bool: "true or false", int: "an integer", str: "a string", list: "a list",
              dict: "a table", float: "a number"}


@dataclass(frozen=True)
class Option:
    """One key: the argparse ``dest`` it sets, its TOML kind, and the flag's converter
    (applied to the value, or to each item of a list)."""

    dest: str
    kind: str  # one of KINDS
    convert: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")


def _type_name(value: Any) -> str:
    for t, name in _TOML_TYPE.items():
        if isinstance(value, t):
            return name
    return type(value).__name__  # dates and times


def parse_config(text: str, source: str) -> dict[str, Any]:
    """The TOML document as a dict; ConfigError (with tomllib's line and column) if it is
    not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {source}: not valid TOML: {exc}") from None


def load_config(data: Mapping[str, Any], options: Mapping[str, Option], source: str,
                base: Path) -> dict[str, Any]:
    """Check every key of ``data`` against ``options``; return ``{dest: value}``.

    Relative paths (values a converter turned into a ``Path``) are taken from ``base``,
    the file's directory, and ``~`` is expanded: a service's config file then means the
    same wherever the service starts.
    """
    values: dict[str, Any] = {}
    for key, value in data.items():
        option = options.get(key)

        def fail(what: str) -> ConfigError:
            return ConfigError(f"config file {source}: key {key!r}: {what}")

        if option is None:
            close = difflib.get_close_matches(key, list(options), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            if isinstance(value, dict):
                raise fail(f"is a table; toxbridge reads only top-level keys{hint}")
            raise fail(f"unknown key{hint}")
        if option.kind == "list":
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise fail(f"must be a string or a list of strings, not {_type_name(value)}")
            values[option.dest] = [_convert(option, i, base, fail) for i in items]
            continue
        want = {"bool": bool, "int": int, "str": str}[option.kind]
        if not isinstance(value, want) or (want is int and isinstance(value, bool)):
            raise fail(f"must be {_TOML_TYPE[want]}, not {_type_name(value)} ({value!r})")
        values[option.dest] = value if option.kind == "bool" else _convert(option, value, base, fail)
    return values


def _convert(option: Option, value: Any, base: Path, fail: Callable[[str], ConfigError]) -> Any:
    if option.convert is None:
        return value
    try:
        result = option.convert(value)
    except (ValueError, TypeError, argparse.ArgumentTypeError, ConfigError) as exc:
        raise fail(str(exc) or f"bad value {value!r}") from None
    if isinstance(result, Path):
        result = result.expanduser()
        if not result.is_absolute():
            result = base / result
    return result
