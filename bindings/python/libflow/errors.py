"""Exceptions: one base class, :class:`Error`, and one subclass per code.

The classes are bound to their codes at import time from the library's own
table: the codes are read by asking ``flow_err_name`` about -1, -2, ... until
it answers ``FLOW_EUNKNOWN``, so the numbers and descriptions always come
from the libflow that is loaded.  The classes below give the known codes
Pythonic names (and docstrings, and types for mypy); a code this module has
no name for still gets a class, named after its C name without the
``FLOW_`` prefix (``FLOW_EFOO`` becomes ``libflow.EFOO``).  Every class is
also reachable under its C name (``libflow.EPERM is
libflow.PermissionDenied``) and through :func:`error_class`.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Type

from ._native import lib

__all__ = [
    "Error", "InternalError", "OutOfMemory", "Invalid", "NotFound",
    "AlreadyExists", "ScriptError", "LimitExceeded", "ValidationError",
    "EventNotAccepted", "PermissionDenied", "Denied", "UnknownState",
    "Refused", "CaseClosed", "StorageError", "Busy", "Misuse", "Cancelled",
    "Conflict", "EngineClosed", "error_class", "error_codes",
]


class Error(Exception):
    """A refusal or failure reported by libflow.

    Attributes:
        code: the negative ``FLOW_E*`` number (``-4``).
        code_name: its symbolic name (``"FLOW_ENOTFOUND"``).
        message: the engine's one-line message (``flow_errmsg``), naming
            what was at fault; the code's description when there was none.
        description: the code's short description (``flow_strerror``).
    """

    code: int = -1
    code_name: str = "FLOW_ERROR"
    description: str = "internal error"
    #: the C name this class stands for; set on each subclass below
    flow_name: str = "FLOW_ERROR"

    def __init__(self, message: str = "", code: Optional[int] = None) -> None:
        if code is not None:
            self.code = code
            self.code_name = _name_of(code)
            self.description = _describe(code)
        self.message = message or self.description
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code_name}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code})"


class InternalError(Error):
    """FLOW_ERROR: an internal error of the library."""

    flow_name = "FLOW_ERROR"


class OutOfMemory(Error, MemoryError):
    """FLOW_ENOMEM: an allocation failed; nothing was changed."""

    flow_name = "FLOW_ENOMEM"


class Invalid(Error, ValueError):
    """FLOW_EINVAL: an argument or input is not valid (a malformed case id,
    JSON the engine refuses, an unknown status, a bad calendar option)."""

    flow_name = "FLOW_EINVAL"


class NotFound(Error, LookupError):
    """FLOW_ENOTFOUND: no such case, service, task, request or file."""

    flow_name = "FLOW_ENOTFOUND"


class AlreadyExists(Error):
    """FLOW_EEXIST: the same name (service and version, action) already
    exists with different content."""

    flow_name = "FLOW_EEXIST"


class ScriptError(Error):
    """FLOW_ESCRIPT: a service script failed to load or a handler threw; the
    message gives the file and line."""

    flow_name = "FLOW_ESCRIPT"


class LimitExceeded(Error):
    """FLOW_ELIMIT: a script budget (instructions, memory, CPU time) or
    another limit ran out."""

    flow_name = "FLOW_ELIMIT"


class ValidationError(Error, ValueError):
    """FLOW_EDATA: case data (or a task's outcome) failed the service's
    field rules; the message lists every failing field."""

    flow_name = "FLOW_EDATA"


class EventNotAccepted(Error):
    """FLOW_EEVENT: the case's current state does not accept the event."""

    flow_name = "FLOW_EEVENT"


class PermissionDenied(Error):
    """FLOW_EPERM: the actor lacks every role the event needs, or the task
    is assigned to someone else."""

    flow_name = "FLOW_EPERM"


#: Another name for :class:`PermissionDenied`.
Denied = PermissionDenied


class UnknownState(Error):
    """FLOW_ESTATE: a handler returned a state that does not exist."""

    flow_name = "FLOW_ESTATE"


class Refused(Error):
    """FLOW_EREFUSED: a guard said no or the script called flow.fail."""

    flow_name = "FLOW_EREFUSED"


class CaseClosed(Error):
    """FLOW_ECLOSED: the case is closed and takes no more events."""

    flow_name = "FLOW_ECLOSED"


class StorageError(Error):
    """FLOW_EIO: the database failed (or is not a libflow database)."""

    flow_name = "FLOW_EIO"


class Busy(StorageError):
    """FLOW_EBUSY: the database stayed locked by another connection longer
    than the busy timeout."""

    flow_name = "FLOW_EBUSY"


class Misuse(Error):
    """FLOW_EMISUSE: the library was called in a way it does not allow (a
    loop run from inside one of the engine's callbacks, say)."""

    flow_name = "FLOW_EMISUSE"


class Cancelled(Error):
    """FLOW_ECANCELED: an asynchronous call was dropped before it was carried
    out (the engine closed while it was queued)."""

    flow_name = "FLOW_ECANCELED"


class Conflict(Error):
    """FLOW_ECONFLICT: already finished or taken by someone else (a second
    answer to an action request, a task claimed by another person)."""

    flow_name = "FLOW_ECONFLICT"


class EngineClosed(Misuse):
    """The engine was used after :meth:`libflow.Engine.close`: raised by the
    binding before anything reaches the library (code FLOW_EMISUSE)."""

    flow_name = "FLOW_EMISUSE"


_KNOWN: List[Type[Error]] = [
    InternalError, OutOfMemory, Invalid, NotFound, AlreadyExists, ScriptError,
    LimitExceeded, ValidationError, EventNotAccepted, PermissionDenied,
    UnknownState, Refused, CaseClosed, StorageError, Busy, Misuse, Cancelled,
    Conflict,
]

_BY_CODE: Dict[int, Type[Error]] = {}
_NAMES: Dict[int, str] = {}
_DESCRIPTIONS: Dict[int, str] = {}


def _name_of(code: int) -> str:
    if code in _NAMES:
        return _NAMES[code]
    raw: bytes = lib.flow_err_name(code)
    return raw.decode()


def _describe(code: int) -> str:
    if code in _DESCRIPTIONS:
        return _DESCRIPTIONS[code]
    raw: bytes = lib.flow_strerror(code)
    return raw.decode()


def _library_codes() -> List[int]:
    """Every code the loaded library knows: -1, -2, ... until the first one
    it calls FLOW_EUNKNOWN (the table is dense: codes are appended, never
    renumbered)."""
    codes = []
    for code in range(-1, -10000, -1):
        if lib.flow_err_name(code) == b"FLOW_EUNKNOWN":
            break
        codes.append(code)
    return codes


def _bind() -> Dict[str, Type[Error]]:
    """Binds a class to every library code; returns the generated ones."""
    known = {cls.flow_name: cls for cls in _KNOWN}
    generated: Dict[str, Type[Error]] = {}
    for code in _library_codes():
        name = lib.flow_err_name(code).decode()
        desc = lib.flow_strerror(code).decode()
        _NAMES[code] = name
        _DESCRIPTIONS[code] = desc
        cls = known.get(name)
        if cls is None:
            short = name[5:] if name.startswith("FLOW_") else name
            cls = type(short, (Error,), {
                "__doc__": f"{name}: {desc}.",
                "__module__": __name__,
                "flow_name": name,
            })
            generated[short] = cls
        cls.code = code
        cls.code_name = name
        cls.description = desc
        _BY_CODE[code] = cls
    EngineClosed.code = Misuse.code
    EngineClosed.code_name = Misuse.code_name
    EngineClosed.description = "the engine is closed"
    Error.code = InternalError.code
    Error.code_name = InternalError.code_name
    Error.description = InternalError.description
    return generated


_GENERATED = _bind()
globals().update(_GENERATED)
__all__ += sorted(_GENERATED)
# The C names, as aliases: libflow.EPERM is libflow.PermissionDenied.
for _code, _cls in _BY_CODE.items():
    _alias = _NAMES[_code][5:]
    if _alias not in globals():
        globals()[_alias] = _cls
        __all__.append(_alias)


def error_class(code: int) -> Type[Error]:
    """The exception class of a ``FLOW_E*`` code (-4 gives
    :class:`NotFound`); :class:`Error` itself for a code the library does
    not know."""
    return _BY_CODE.get(code, Error)


def error_class_by_name(name: str) -> Type[Error]:
    """The exception class of a code named as the library names it
    (``"FLOW_EPERM"``, as in incidents' ``code`` and notes' ``error``), or
    without its prefix (``"EPERM"``); :class:`Error` when unknown."""
    if not name.startswith("FLOW_"):
        name = "FLOW_" + name
    for code, known in _NAMES.items():
        if known == name:
            return _BY_CODE[code]
    return Error


def error_codes() -> Dict[int, str]:
    """Every code of the loaded library and its name, ``{-1: "FLOW_ERROR",
    -2: "FLOW_ENOMEM", ...}``."""
    return dict(_NAMES)


def make_error(code: int, message: str) -> Error:
    """The exception for ``code`` carrying ``message``."""
    cls = error_class(code)
    return cls(message, code)


__all__.append("error_class_by_name")
__all__.append("make_error")
