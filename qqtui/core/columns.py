"""How a frozen record's fields are stored: the column facts each field declares
(`column()`), read back once per record type as `StoredField`s.

Stdlib only, like records.py, which declares the run's columns with it: the table
(models.py), the record's decoders and its JSON output all derive from the one
declaration instead of each writing the fields out again.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["integer", "float", "boolean", "string", "text", "json"]

_FACTS = "qqtui.column"  # the key of a field's facts in its dataclass metadata


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()
"""A column an insert must name (it has no insert default)."""


@dataclass(frozen=True, slots=True)
class _Facts:
    primary_key: bool = False
    insert_default: Any = NO_DEFAULT
    nullable: bool | None = None
    text: bool = False
    since: int = 1
    in_json: bool = True


def column(
    *,
    primary_key: bool = False,
    insert_default: Any = NO_DEFAULT,
    nullable: bool | None = None,
    text: bool = False,
    since: int = 1,
    in_json: bool = True,
) -> Any:
    """A record field's storage facts, for the facts its annotation does not say.

    Args:
        primary_key: the table's key (an integer the database assigns).
        insert_default: what an insert that names no value stores. Not a default of
            the record, which always carries every value.
        nullable: the column may hold NULL although the record's type is not optional
            (the record reads NULL as its empty value). Default: from the annotation.
        text: a TEXT column rather than VARCHAR (unbounded, never compared in an index).
        since: the schema version that added the column; a row of an older file read
            without migrating gets its insert default (or None).
        in_json: part of the record's JSON output.
    """
    facts = _Facts(primary_key, insert_default, nullable, text, since, in_json)
    return dataclasses.field(metadata={_FACTS: facts})


@dataclass(frozen=True, slots=True)
class StoredField:
    """One field of a record and the column that stores it."""

    name: str
    kind: Kind
    base: type  # the annotation without `| None`: int, str, tuple, dict, an enum, ...
    nullable: bool
    primary_key: bool
    insert_default: Any
    since: int
    in_json: bool

    @property
    def old_row_default(self) -> Any:
        """The value of this column in a row of a file older than the column."""
        return None if self.insert_default is NO_DEFAULT else self.insert_default


def stored_fields(record: type) -> tuple[StoredField, ...]:
    """The stored fields of the dataclass `record`, in field order. Call it once, at
    import: it evaluates the annotations."""
    hints = typing.get_type_hints(record)
    out: list[StoredField] = []
    for field in dataclasses.fields(record):
        facts: _Facts = field.metadata.get(_FACTS, _Facts())
        base, optional = _unwrap_optional(hints[field.name])
        nullable = optional if facts.nullable is None else facts.nullable
        if facts.primary_key:
            nullable = False
        if facts.since > 1 and not nullable and facts.insert_default is NO_DEFAULT:
            # Older rows get a value from somewhere, and ALTER TABLE needs one too.
            raise TypeError(f"{record.__name__}.{field.name}: a later column needs a default")
        kind = _kind(base, text=facts.text)
        out.append(
            StoredField(
                field.name,
                kind,
                base,
                nullable,
                facts.primary_key,
                facts.insert_default,
                facts.since,
                facts.in_json,
            )
        )
    return tuple(out)


def require_projection(projection: type, record: type) -> None:
    """Raise TypeError unless every field of `projection` (a NamedTuple or dataclass)
    is a field of `record` with the same annotation, so a projection can only narrow
    the record, never invent or retype a column."""
    wanted = typing.get_type_hints(projection)
    have = typing.get_type_hints(record)
    names = getattr(projection, "_fields", None) or [f.name for f in dataclasses.fields(projection)]
    wrong = [name for name in names if name not in have or wanted[name] != have[name]]
    if wrong:
        raise TypeError(
            f"{projection.__name__} names fields that {record.__name__} does not have"
            f" (or types them differently): {', '.join(wrong)}"
        )


def _unwrap_optional(hint: Any) -> tuple[type, bool]:
    """(`hint` without None, whether None was in it)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) != 1:
            raise TypeError(f"a column holds one type, not {hint}")
        return _origin(args[0]), True
    return _origin(hint), False


def _origin(hint: Any) -> type:
    return typing.get_origin(hint) or hint


def _kind(base: type, *, text: bool) -> Kind:
    # bool before int: bool is an int.
    if base is bool:
        return "boolean"
    if base is int:
        return "integer"
    if base is float:
        return "float"
    if base in (tuple, list, dict):
        return "json"
    if issubclass(base, str) and (base is str or issubclass(base, enum.Enum)):
        return "text" if text else "string"
    raise TypeError(f"no column kind for {base!r}")
