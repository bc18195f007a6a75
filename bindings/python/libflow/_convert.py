"""Conversions between Python values and what the C API takes: JSON text,
UTF-8 strings, times in milliseconds, and actors."""

from __future__ import annotations

import ctypes
import datetime as _dt
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence, Tuple, Union

from . import _native
from .errors import make_error

__all__ = [
    "Actor", "ActorLike", "TimeLike", "parse_time", "format_time",
    "to_datetime",
]

JSONObject = Mapping[str, Any]

#: What a time argument may be: milliseconds since the Unix epoch (UTC), a
#: timezone-aware :class:`datetime.datetime`, or ISO 8601 text with an
#: offset or ``Z``.
TimeLike = Union[int, _dt.datetime, str]

_UTC = _dt.timezone.utc


def _json_default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise TypeError(
                f"naive datetime {value!r} cannot be sent: give it a "
                "timezone (datetime.timezone.utc) so its instant is known")
        return format_time(to_ms(value))
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(
        f"{type(value).__name__} is not JSON serialisable")


def _check_finite(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value!r} is not a JSON number")


def encode_object(value: Optional[JSONObject], what: str) -> Optional[bytes]:
    """JSON text (UTF-8) of a mapping, or None for None.

    Raises TypeError when value is not a mapping or holds something that
    is not JSON serialisable, ValueError for NaN/infinity or a cycle: all
    before anything reaches the library.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{what} must be a dict (a JSON object), not "
            f"{type(value).__name__}")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":"), default=_json_default)
    except TypeError as exc:
        raise TypeError(f"{what} is not JSON serialisable: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{what} cannot be sent as JSON: {exc}") from None
    return text.encode()


def encode_scalar(value: Any, what: str) -> bytes:
    """JSON text of a scalar (str, int, float, bool or None)."""
    if value is not None and not isinstance(value, (str, int, float, bool)):
        raise TypeError(
            f"{what} must be a JSON scalar (str, int, float, bool or None), "
            f"not {type(value).__name__}")
    _check_finite(value, what)
    return json.dumps(value, ensure_ascii=False).encode()


def decode(raw: Optional[bytes]) -> Any:
    """The Python value of JSON text the library returned."""
    if raw is None:
        return None
    return json.loads(raw)


def text(value: Optional[str], what: str) -> Optional[bytes]:
    """UTF-8 bytes of an optional str argument."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if "\0" in value:
        raise ValueError(f"{what} must not contain NUL characters")
    return value.encode()


def required_text(value: str, what: str) -> bytes:
    """UTF-8 bytes of a str argument that may not be None."""
    if value is None:
        raise TypeError(f"{what} is required")
    out = text(value, what)
    assert out is not None
    return out


def ident(value: Union[str, int], what: str) -> bytes:
    """A case, task, request or incident id: the engine's decimal text, or
    an int."""
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a str or int, not bool")
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, str):
        return required_text(value, what)
    raise TypeError(f"{what} must be a str or int, not {type(value).__name__}")


# ---- time ------------------------------------------------------------------


def parse_time(text_: str) -> int:
    """Milliseconds since the epoch of an ISO 8601 timestamp with an offset
    or ``Z`` (``"2026-11-27T09:00:00Z"``), parsed by the library.

    Raises :class:`libflow.Invalid` for anything else.
    """
    out = ctypes.c_int64()
    rc = _native.lib.flow_time_parse(ctypes.byref(out),
                                     required_text(text_, "time"))
    if rc != 0:
        raise make_error(rc, f"not an ISO 8601 time with an offset or Z: "
                             f"{text_!r}")
    return int(out.value)


def format_time(ms: int) -> str:
    """ISO 8601 UTC text of ms since the epoch (``"2026-11-27T09:00:00Z"``,
    with ``.mmm`` only when there is a fraction)."""
    buf = ctypes.create_string_buffer(40)
    rc = _native.lib.flow_time_format(buf, len(buf), int(ms))
    if rc != 0:
        raise make_error(rc, f"cannot format {ms} ms as a time")
    return buf.value.decode()


def to_ms(when: TimeLike) -> int:
    """Milliseconds since the epoch of a TimeLike."""
    if isinstance(when, bool):
        raise TypeError("a time must be int ms, an aware datetime or ISO text")
    if isinstance(when, int):
        return when
    if isinstance(when, _dt.datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(
                f"naive datetime {when!r}: give it a timezone "
                "(datetime.timezone.utc) so its instant is known")
        delta = when - _dt.datetime(1970, 1, 1, tzinfo=_UTC)
        return (delta.days * 86_400_000 + delta.seconds * 1000
                + delta.microseconds // 1000)
    if isinstance(when, str):
        return parse_time(when)
    raise TypeError(
        "a time must be int ms, an aware datetime or ISO 8601 text, not "
        f"{type(when).__name__}")


def to_datetime(ms: int) -> _dt.datetime:
    """The aware UTC datetime of ms since the epoch."""
    return _dt.datetime(1970, 1, 1, tzinfo=_UTC) + _dt.timedelta(
        milliseconds=ms)


def duration_ms(value: Union[None, float, _dt.timedelta], what: str) -> int:
    """Milliseconds of a timedelta or a number of seconds (0 for None)."""
    if value is None:
        return 0
    if isinstance(value, _dt.timedelta):
        return int(value.total_seconds() * 1000)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{what} must be a timedelta or seconds, not "
            f"{type(value).__name__}")
    return int(value * 1000)


# ---- actors ------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who is acting: a person's or system's id and the roles they hold.

    Pass one as ``actor=`` wherever the C API takes a flow_actor.  A plain
    str is an actor with that id and no roles; a ``(id, roles)`` tuple or a
    ``{"id": ..., "roles": [...]}`` dict work too; None is anonymous.
    """

    id: Optional[str] = None
    roles: Tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.id is not None and not isinstance(self.id, str):
            raise TypeError(
                f"actor id must be a str, not {type(self.id).__name__}")
        roles = self.roles
        if isinstance(roles, str):
            raise TypeError("actor roles must be a list of str, not a str")
        roles = tuple(roles)
        for role in roles:
            if not isinstance(role, str):
                raise TypeError(
                    f"actor roles must be str, not {type(role).__name__}")
        object.__setattr__(self, "roles", roles)
        # The C struct, built once: the encoded strings live as long as it.
        c_roles = (ctypes.c_char_p * max(len(roles), 1))(
            *[text(r, "role") for r in roles])
        c_actor = _native.Actor(text(self.id, "actor id"), c_roles,
                                len(roles))
        object.__setattr__(self, "_c", (c_actor, c_roles))

    def _struct(self) -> Any:
        return getattr(self, "_c")[0]


#: What an ``actor=`` argument may be.
ActorLike = Union[Actor, str, Mapping[str, Any], Tuple[str, Sequence[str]],
                  None]


def _roles(roles: Any) -> Tuple[str, ...]:
    if isinstance(roles, (str, bytes)):
        raise TypeError("actor roles must be a list of str, not a single "
                        f"{type(roles).__name__}")
    return tuple(roles)


def as_actor(actor: ActorLike) -> Optional[Actor]:
    """An Actor from an ActorLike (None stays None: anonymous)."""
    if actor is None or isinstance(actor, Actor):
        return actor
    if isinstance(actor, str):
        return Actor(actor)
    if isinstance(actor, tuple) and len(actor) == 2:
        return Actor(actor[0], _roles(actor[1]))
    if isinstance(actor, Mapping):
        unknown = set(actor) - {"id", "roles"}
        if unknown:
            raise TypeError(
                f"actor has unknown keys {sorted(unknown)}: only id and roles")
        return Actor(actor.get("id"), _roles(actor.get("roles") or ()))
    raise TypeError(
        "actor must be an Actor, an id str, an (id, roles) tuple or a dict, "
        f"not {type(actor).__name__}")


def actor_arg(actor: ActorLike) -> Any:
    """The ``const flow_actor *`` argument (a struct, or None for NULL)."""
    a = as_actor(actor)
    if a is None:
        return None
    return ctypes.byref(a._struct())
