"""The C side: finding libflow.so, its structs and its function prototypes.

Nothing here is public.  The rest of the package calls the functions through
the module-level ``lib`` object, whose prototypes are declared once below so
that ctypes converts and checks every argument.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from typing import Any, Optional

__all__ = ["lib", "library_path", "take_string"]

# ---- finding the library -------------------------------------------------


def _find_library() -> str:
    """The path (or soname) of libflow to load.

    ``LIBFLOW_LIBRARY`` (a full path to libflow.so, e.g. a build tree's)
    wins; otherwise ``ctypes.util.find_library("flow")`` finds an installed
    one.
    """
    env = os.environ.get("LIBFLOW_LIBRARY")
    if env:
        if not os.path.exists(env):
            raise ImportError(
                f"LIBFLOW_LIBRARY={env!r}: no such file; set it to the full "
                "path of libflow.so (e.g. build/libflow.so) or unset it to "
                "use an installed libflow")
        return env
    found = ctypes.util.find_library("flow")
    if found is None:
        raise ImportError(
            "libflow not found: install it (cmake --install) so that "
            "ctypes.util.find_library('flow') finds it, or set "
            "LIBFLOW_LIBRARY to the full path of libflow.so")
    return found


library_path: str = _find_library()
try:
    lib: Any = ctypes.CDLL(library_path)
except OSError as exc:  # pragma: no cover - depends on the machine
    raise ImportError(f"cannot load libflow from {library_path!r}: {exc}") \
        from exc

# ---- types ------------------------------------------------------------------

c_char_p = ctypes.c_char_p
c_void_p = ctypes.c_void_p
c_int = ctypes.c_int
c_int64 = ctypes.c_int64
c_uint64 = ctypes.c_uint64
c_uint32 = ctypes.c_uint32
c_size_t = ctypes.c_size_t
c_unsigned = ctypes.c_uint
PP = ctypes.POINTER(ctypes.c_void_p)  # char **out, read as void* to free it

ALLOC_FN = ctypes.CFUNCTYPE(c_void_p, c_void_p, c_void_p, c_size_t, c_size_t)
LOG_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_char_p, c_void_p)
CLOCK_FN = ctypes.CFUNCTYPE(c_int64, c_void_p)
CASE_CB = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_char_p, c_void_p)
LISTENER_FN = ctypes.CFUNCTYPE(None, c_void_p, c_char_p, c_void_p)
POST_FN = ctypes.CFUNCTYPE(None, c_void_p, c_void_p)


class EngineOptions(ctypes.Structure):
    """struct flow_engine_options (version 2)."""

    _fields_ = [
        ("version", c_unsigned),
        ("alloc", ALLOC_FN),
        ("alloc_payload", c_void_p),
        ("synchronous", c_int),
        ("script_memory_limit", c_size_t),
        ("script_instruction_limit", c_uint64),
        ("log", LOG_FN),
        ("log_payload", c_void_p),
        ("clock", CLOCK_FN),
        ("clock_payload", c_void_p),
        ("busy_timeout_ms", c_int),
        ("script_cpu_ms", c_uint32),
        ("script_log_limit", c_size_t),
        ("script_memory_max", c_size_t),
        ("script_instruction_max", c_uint64),
        ("script_cpu_ms_max", c_uint32),
    ]


ENGINE_OPTIONS_VERSION = 2


class CalendarOptions(ctypes.Structure):
    """struct flow_calendar_options (version 1)."""

    _fields_ = [
        ("version", c_unsigned),
        ("zone", c_char_p),
        ("opens", c_char_p),
        ("closes", c_char_p),
        ("weekdays", c_unsigned),
        ("no_bank_holidays", c_int),
        ("holidays", ctypes.POINTER(c_char_p)),
        ("nholidays", c_size_t),
    ]


CALENDAR_OPTIONS_VERSION = 1


class Actor(ctypes.Structure):
    """struct flow_actor."""

    _fields_ = [
        ("id", c_char_p),
        ("roles", ctypes.POINTER(c_char_p)),
        ("nroles", c_size_t),
    ]


class Where(ctypes.Structure):
    """struct flow_where."""

    _fields_ = [("field", c_char_p), ("value_json", c_char_p)]


class CaseQuery(ctypes.Structure):
    """struct flow_case_query (version 2)."""

    _fields_ = [
        ("version", c_unsigned),
        ("service", c_char_p),
        ("state", c_char_p),
        ("status", c_char_p),
        ("where", ctypes.POINTER(Where)),
        ("nwhere", c_size_t),
        ("limit", c_size_t),
        ("offset", c_size_t),
        ("overdue", c_int),
    ]


CASE_QUERY_VERSION = 2


class TaskQuery(ctypes.Structure):
    """struct flow_task_query."""

    _fields_ = [
        ("case_id", c_char_p),
        ("team", c_char_p),
        ("assignee", c_char_p),
        ("status", c_char_p),
        ("overdue", c_int),
    ]


class Request(ctypes.Structure):
    """struct flow_request."""

    _fields_ = [
        ("id", c_char_p),
        ("action", c_char_p),
        ("case_id", c_char_p),
        ("args_json", c_char_p),
        ("key", c_char_p),
        ("attempt", c_int),
    ]


ACTION_FN = ctypes.CFUNCTYPE(None, c_void_p, ctypes.POINTER(Request),
                             c_void_p)


class TestOptions(ctypes.Structure):
    """struct flow_test_options (version 1)."""

    __test__ = False  # not a test case, whatever pytest thinks of the name

    _fields_ = [
        ("version", c_unsigned),
        ("filter", c_char_p),
        ("service_paths", ctypes.POINTER(c_char_p)),
        ("nservice_paths", c_size_t),
        ("start", c_char_p),
        ("coverage", c_int),
        ("instruction_limit", c_uint64),
        ("cpu_ms", c_uint32),
        ("memory_limit", c_size_t),
    ]


TEST_OPTIONS_VERSION = 1

# ---- prototypes --------------------------------------------------------------


def _proto(name: str, restype: Any, *argtypes: Any) -> None:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


E = c_void_p  # flow_engine *

_proto("flow_strerror", c_char_p, c_int)
_proto("flow_err_name", c_char_p, c_int)
_proto("flow_version", c_char_p)
_proto("flow_free", None, c_void_p)

_proto("flow_engine_open", c_int, ctypes.POINTER(c_void_p), c_char_p,
       ctypes.POINTER(EngineOptions), ctypes.c_char_p, c_size_t)
_proto("flow_engine_close", None, E)
_proto("flow_errmsg", c_char_p, E)
_proto("flow_errcode", c_int, E)
_proto("flow_engine_set_time", None, E, c_int64)
_proto("flow_engine_now", c_int64, E)
_proto("flow_engine_set_calendar", c_int, E, ctypes.POINTER(CalendarOptions))
_proto("flow_time_parse", c_int, ctypes.POINTER(c_int64), c_char_p)
_proto("flow_time_format", c_int, ctypes.c_char_p, c_size_t, c_int64)

_proto("flow_service_load_file", c_int, PP, E, c_char_p)
_proto("flow_service_load_string", c_int, PP, E, c_char_p, c_size_t,
       c_char_p)
_proto("flow_service_check", c_int, E, c_char_p, c_size_t, c_char_p)
_proto("flow_service_schema", c_int, PP, E, c_char_p, c_int64)
_proto("flow_service_list", c_int, PP, E)
_proto("flow_service_lint", c_int, PP, E, c_char_p, c_size_t, c_char_p)
_proto("flow_service_graph", c_int, PP, E, c_char_p, c_size_t, c_char_p,
       c_char_p)

_AP = ctypes.POINTER(Actor)
_proto("flow_case_open", c_int, PP, E, c_char_p, c_char_p, _AP)
_proto("flow_case_signal", c_int, PP, E, c_char_p, c_char_p, c_char_p, _AP)
_proto("flow_case_get", c_int, PP, E, c_char_p)
_proto("flow_case_history", c_int, PP, E, c_char_p)
_proto("flow_case_list", c_int, PP, E, ctypes.POINTER(CaseQuery))
_proto("flow_case_timers", c_int, PP, E, c_char_p)
_proto("flow_case_open_async", c_int, E, c_char_p, c_char_p, _AP, CASE_CB,
       c_void_p)
_proto("flow_case_signal_async", c_int, E, c_char_p, c_char_p, c_char_p, _AP,
       CASE_CB, c_void_p)
_proto("flow_message_send_async", c_int, E, c_char_p, c_char_p, c_char_p,
       c_int64, CASE_CB, c_void_p)
_proto("flow_eval", c_int, PP, E, c_char_p, c_size_t, c_char_p)

_proto("flow_engine_run", c_int, E, c_int)
_proto("flow_engine_stop", None, E)
_proto("flow_engine_backend_fd", c_int, E)
_proto("flow_engine_backend_timeout", c_int, E)
_proto("flow_engine_post", c_int, E, POST_FN, c_void_p)
_proto("flow_engine_fire_due", c_int, E, ctypes.POINTER(c_size_t))
_proto("flow_engine_set_listener", None, E, LISTENER_FN, c_void_p)
_proto("flow_engine_subscribe", c_int, E, LISTENER_FN, c_void_p,
       ctypes.POINTER(c_int))
_proto("flow_engine_unsubscribe", c_int, E, c_int)
_proto("flow_engine_use_uv_loop", c_int, E, c_void_p)
_proto("flow_engine_uv_loop", c_void_p, E)

_proto("flow_action_register", c_int, E, c_char_p, ACTION_FN, c_void_p)
_proto("flow_action_complete", c_int, E, c_char_p, c_char_p)
_proto("flow_action_fail", c_int, E, c_char_p, c_int, c_char_p)
_proto("flow_actions_list", c_int, PP, E, c_char_p, c_char_p)

_proto("flow_tasks_list", c_int, PP, E, ctypes.POINTER(TaskQuery))
_proto("flow_task_claim", c_int, E, c_char_p, _AP)
_proto("flow_task_release", c_int, E, c_char_p, _AP)
_proto("flow_task_complete", c_int, PP, E, c_char_p, c_char_p, _AP)
_proto("flow_task_cancel", c_int, E, c_char_p, _AP)
_proto("flow_incidents_list", c_int, PP, E, c_char_p, c_char_p)
_proto("flow_incident_retry", c_int, PP, E, c_char_p, _AP)
_proto("flow_incident_dismiss", c_int, E, c_char_p, _AP)
_proto("flow_message_send", c_int, PP, E, c_char_p, c_char_p, c_char_p,
       c_int64)
_proto("flow_messages_list", c_int, PP, E, c_char_p, c_char_p, c_char_p)

_proto("flow_test_file", c_int, PP, c_char_p, ctypes.POINTER(TestOptions))


def take_string(ptr: Optional[int]) -> Optional[bytes]:
    """Copies an owned ``char *`` the library returned and frees it."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr)
    finally:
        lib.flow_free(ptr)
