"""libflow for Python: the embeddable case and workflow engine, through ctypes.

The whole C API (include/flow.h) as Python objects::

    import libflow

    with libflow.Engine(":memory:", now="2026-02-02T09:00:00Z") as eng:
        eng.load_service_file("missed_bin.lua")
        case = eng.open_case("missed_bin", {"uprn": "100023336956"},
                             actor=libflow.Actor("web", ["resident"]))
        case = eng.signal(case["id"], "assign", {"crew": "north"},
                          actor=("crew-7", ["crew"]))

* :class:`Engine` -- services, cases, tasks, messages, incidents, actions,
  subscriptions, the clock, the calendar and the loop;
* :class:`Error` and one subclass per FLOW_E* code (:class:`NotFound`,
  :class:`PermissionDenied`, ...), bound to the library's own code table at
  import time;
* :mod:`libflow.aio` -- the engine inside asyncio.

The library is found through ``LIBFLOW_LIBRARY`` (full path to libflow.so)
or ``ctypes.util.find_library("flow")``.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from . import _native, errors
from ._callbacks import ActionFailed, ActionRequest, Subscription
from ._convert import (Actor, ActorLike, TimeLike, format_time, parse_time,
                       required_text, text, to_datetime)
from .engine import (WEEKDAYS, ActionHandler, Case, Engine, LogLevel,
                     RunMode, SyncMode)
from .errors import (AlreadyExists, Busy, CaseClosed, Cancelled, Conflict,
                     Denied, EngineClosed, Error, EventNotAccepted,
                     InternalError, Invalid, LimitExceeded, Misuse, NotFound,
                     OutOfMemory, PermissionDenied, Refused, ScriptError,
                     StorageError, UnknownState, ValidationError, error_class,
                     error_class_by_name, error_codes, make_error)

__version__ = "0.1.0"

#: the path (or soname) of the libflow that was loaded
library_path: str = _native.library_path


def version() -> str:
    """The version of the libflow library loaded (flow_version)."""
    raw: bytes = _native.lib.flow_version()
    return raw.decode()


def run_test_file(path: str, *, filter: Optional[str] = None,
                  service_paths: Sequence[str] = (),
                  start: Optional[str] = None, coverage: bool = False,
                  instruction_limit: int = 0, cpu_ms: int = 0,
                  memory_limit: int = 0) -> Dict[str, Any]:
    """Runs a service test file (``*_test.lua``, what ``flow test`` runs)
    and returns its results: ``{"file", "tests": [{"name", "status", ...}],
    "coverage"?}``.  Each test runs in its own in-memory engine with a
    virtual clock starting at ``start`` (ISO 8601; default Monday
    2026-02-02 09:00 UTC).  :class:`NotFound` when the file cannot be read,
    :class:`Invalid` for bad options."""
    import ctypes
    paths = [required_text(p, "service path") for p in service_paths]
    arr = (ctypes.c_char_p * max(len(paths), 1))(*paths)
    opts = _native.TestOptions(
        _native.TEST_OPTIONS_VERSION, text(filter, "filter"),
        arr if paths else None, len(paths), text(start, "start"),
        1 if coverage else 0, instruction_limit, cpu_ms, memory_limit)
    out = ctypes.c_void_p()
    rc = _native.lib.flow_test_file(ctypes.byref(out),
                                    required_text(str(path), "path"),
                                    ctypes.byref(opts))
    raw = _native.take_string(out.value)
    if rc != 0:
        raise make_error(rc, f"cannot run the test file {path!r}")
    import json
    result: Dict[str, Any] = json.loads(raw or b"{}")
    return result


from . import aio  # noqa: E402  (needs Engine)

__all__ = [
    "Engine", "Actor", "ActorLike", "TimeLike", "Case", "ActionHandler",
    "ActionRequest", "ActionFailed", "Subscription", "SyncMode", "LogLevel",
    "RunMode", "WEEKDAYS", "parse_time", "format_time", "to_datetime",
    "version", "run_test_file", "library_path", "aio", "errors",
    "Error", "InternalError", "OutOfMemory", "Invalid", "NotFound",
    "AlreadyExists", "ScriptError", "LimitExceeded", "ValidationError",
    "EventNotAccepted", "PermissionDenied", "Denied", "UnknownState",
    "Refused", "CaseClosed", "StorageError", "Busy", "Misuse", "Cancelled",
    "Conflict", "EngineClosed", "error_class", "error_class_by_name",
    "error_codes", "make_error",
]
# The classes generated for codes this module has no name for, and the
# C-name aliases (EPERM, ENOTFOUND, ...), as errors found them at import.
for _name in errors.__all__:
    if _name not in __all__:
        __all__.append(_name)
        globals()[_name] = getattr(errors, _name)
del _name
