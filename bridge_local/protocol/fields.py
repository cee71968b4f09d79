"""The field checker: each command and record is a table of fields (wire name, kind, bounds);
a value either passes its field's checks or raises a :class:`CommandError` naming it."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .codes import (
    _INT63,
    MAX_FILENAME_LENGTH,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_TOKEN_LENGTH,
    CommandError,
    ErrorCode,
    MessageType,
)

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_MD5 = re.compile("[0-9a-fA-F]{32}")


@dataclass(frozen=True, slots=True)
class _Field:
    """One field of a command's table: wire name, kind and bounds."""

    name: str
    kind: str  # "str", "int", "number", "list", "data" (bytes or str), "range", "id"
    required: bool = True
    lo: int = 0  # least value (int, number); a str with lo=1 must not be empty
    hi: int = _INT63  # greatest length or value
    check: str = ""  # "name", "md5", "side": extra format rules for strings


def _check(spec: _Field, value: Any, request: int) -> Any:
    kind = spec.kind
    # Fast paths for the common valid cases (same result as the full checks below): this
    # runs for every field of every message, on both bridges.
    if kind == "str":
        if (type(value) is str and not spec.check and value.isascii()
                and spec.lo <= len(value) <= spec.hi):
            return value
    elif kind == "int" and type(value) is int and spec.lo <= value <= spec.hi:
        return value
    elif (kind == "number" and (type(value) is float or type(value) is int)
          and spec.lo <= value <= spec.hi):  # NaN and the infinities fail the range
        return value

    def fail(code: ErrorCode, what: str) -> CommandError:
        return CommandError(code, f"field '{spec.name}' {what}", request)

    if kind == "id":  # the seed gives task ids no type: a non-negative integer or a string
        if isinstance(value, int) and not isinstance(value, bool):
            spec, kind = _Field(spec.name, "int"), "int"
        elif isinstance(value, str):
            spec, kind = _Field(spec.name, "str", lo=1, hi=MAX_ID_LENGTH), "str"
        else:
            raise fail(ErrorCode.WRONG_TYPE, "must be a string or an integer")
    if kind == "str":
        if not isinstance(value, str):
            raise fail(ErrorCode.WRONG_TYPE, "must be a string")
        if len(value) < spec.lo:
            raise fail(ErrorCode.INVALID_VALUE, "must not be empty")
        if len(value) > spec.hi:
            raise fail(ErrorCode.INVALID_VALUE, f"must be at most {spec.hi} characters")
        if not value.isascii() and _SURROGATE.search(value):  # lone surrogates: no UTF-8
            raise fail(ErrorCode.INVALID_VALUE, "is not valid Unicode (lone surrogate)")
        if spec.check == "name" and _CONTROL.search(value):
            raise fail(ErrorCode.INVALID_VALUE, "must not contain control characters")
        if spec.check == "md5" and not _MD5.fullmatch(value):
            raise fail(ErrorCode.INVALID_VALUE, "must be 32 hexadecimal digits")
        if spec.check == "side" and value not in ("local", "peer"):
            raise fail(ErrorCode.INVALID_VALUE, "must be 'local' or 'peer'")
    elif kind in ("int", "number"):
        ok = (int, float) if kind == "number" else int
        if not isinstance(value, ok) or isinstance(value, bool):
            raise fail(
                ErrorCode.WRONG_TYPE,
                "must be a number" if kind == "number" else "must be an integer",
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise fail(ErrorCode.INVALID_VALUE, "must be finite")
        if not spec.lo <= value <= spec.hi:
            raise fail(ErrorCode.INVALID_VALUE, f"must be in {spec.lo}..{spec.hi}")
    elif kind == "list":
        if not isinstance(value, list):
            raise fail(ErrorCode.WRONG_TYPE, "must be an array")
    elif kind == "data":
        if not isinstance(value, (bytes, str)):
            raise fail(ErrorCode.WRONG_TYPE, "must be bytes or a string")
    elif kind == "range":
        if not (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        ):
            raise fail(ErrorCode.WRONG_TYPE, "must be an array of two integers")
        if not 0 <= value[0] <= value[1] <= _INT63:
            raise fail(ErrorCode.INVALID_VALUE, "must be [start, end] with 0 <= start <= end")
        value = tuple(value)
    return value


_TOKEN = _Field("token", "str", lo=1, hi=MAX_TOKEN_LENGTH)
_NAME = _Field("name", "str", lo=1, hi=MAX_NAME_LENGTH, check="name")
_IP = _Field("ip", "str", hi=64)
_PORT = _Field("port", "int", hi=65535)
_GOAL = _Field("goaltoken", "str", lo=1, hi=MAX_TOKEN_LENGTH)
_FILE_FIELDS = (
    _Field("filename", "str", False, lo=1, hi=MAX_FILENAME_LENGTH, check="name"),
    _Field("filesize", "int", False),
    _Field("md5", "str", False, check="md5"),
    _Field("fileid", "str", False, lo=1, hi=MAX_ID_LENGTH),
)


def _values(table: tuple[_Field, ...], obj: Mapping[str, Any], request: int) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for spec in table:
        value = obj.get(spec.name)
        if value is None:  # absent and null are the same
            if spec.required:
                raise CommandError(ErrorCode.MISSING_FIELD, f"missing field '{spec.name}'", request)
            continue
        values[spec.name] = _check(spec, value, request)
    return values


def _record_values(table: tuple[_Field, ...], obj: Any, request: int) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise CommandError(
            ErrorCode.NOT_AN_OBJECT, f"a record must be an object, not {_json_kind(obj)}", request
        )
    return _values(table, obj, request)


def _check_file_fields(values: dict[str, Any], request: int) -> None:
    present = [f.name for f in _FILE_FIELDS if f.name in values]
    if present or values["type"] == MessageType.FILE:
        for f in _FILE_FIELDS:
            if f.name not in values:
                raise CommandError(
                    ErrorCode.MISSING_FIELD,
                    f"missing field '{f.name}' (a file message needs all four file fields)",
                    request,
                )


def _json_kind(obj: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(obj), "a number" if isinstance(obj, (int, float)) else type(obj).__name__
    )
