"""The engine: services, cases, tasks, messages, incidents, actions and the
loop, over one SQLite database."""

from __future__ import annotations

import concurrent.futures
import ctypes
import datetime as _dt
import enum
import os
import threading
import weakref
from typing import (TYPE_CHECKING, Any, Callable, Dict, Iterable, Iterator,
                    List, Literal, Mapping, Optional, Tuple, Union,
                    overload)

from . import _native
from ._callbacks import ActionRequest, Subscriber, Subscription
from ._convert import (ActorLike, TimeLike, actor_arg, decode, duration_ms,
                       encode_object, encode_scalar, ident, required_text,
                       text, to_datetime, to_ms)
from ._thunks import (_action_thunk, _cancelled_code, _case_thunk,
                      _clock_thunk, _log_thunk, _note_thunk, _post_thunk)
from ._work import WorkMixin
from .errors import EngineClosed, Error, Misuse, make_error

if TYPE_CHECKING:  # pragma: no cover
    from .aio import AsyncioHost

__all__ = ["Engine", "SyncMode", "LogLevel", "RunMode", "Case",
           "ActionHandler", "WEEKDAYS"]

lib = _native.lib
_byref = ctypes.byref
_c_void_p = ctypes.c_void_p
_take = _native.take_string

#: A case, as every call returns it: a dict with id, service, version,
#: state, status ("open"/"closed"), data, opened_at, updated_at, due_at, seq.
Case = Dict[str, Any]

#: An action handler: takes the request, returns the result dict (or None
#: for {}), raises to fail, or returns an awaitable under asyncio.
ActionHandler = Callable[[ActionRequest], Any]

_INT64_MIN = -(2 ** 63)


class SyncMode(enum.IntEnum):
    """SQLite's synchronous setting (flow_sync_mode)."""

    #: WAL + NORMAL: durable across process crashes (the default)
    NORMAL = 0
    #: WAL + FULL: durable across power loss too
    FULL = 1
    #: for tests and throwaway databases only
    OFF = 2


class LogLevel(enum.IntEnum):
    """Levels of the lines the ``log`` callback receives."""

    DEBUG = 0
    INFO = 1
    WARN = 2
    ERROR = 3


class RunMode(enum.IntEnum):
    """How :meth:`Engine.run` runs the loop (flow_run_mode)."""

    #: until stop() or nothing is left to wait for
    DEFAULT = 0
    #: wait for and handle one round of work
    ONCE = 1
    #: handle what is ready now, never block
    NOWAIT = 2


#: Weekday names for ``weekdays=`` of the calendar (bit d is weekday d,
#: 0 = Sunday, as in flow_calendar_options).
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

_OPTION_LIMITS = {
    "script_memory_limit": 2 ** 64 - 1,
    "script_instruction_limit": 2 ** 64 - 1,
    "script_cpu_ms": 2 ** 32 - 1,
    "script_log_limit": 2 ** 64 - 1,
    "script_memory_max": 2 ** 64 - 1,
    "script_instruction_max": 2 ** 64 - 1,
    "script_cpu_ms_max": 2 ** 32 - 1,
    "busy_timeout_ms": 2 ** 31 - 1,
}


def _weekday_mask(weekdays: Union[int, Iterable[str], None]) -> int:
    if weekdays is None:
        return 0
    if isinstance(weekdays, bool):
        raise TypeError("weekdays must be day names or a bit mask")
    if isinstance(weekdays, int):
        if not 0 <= weekdays < 128:
            raise ValueError(f"weekdays bit mask {weekdays} is not 0..127")
        return weekdays
    if isinstance(weekdays, str):
        raise TypeError('weekdays must be a list of day names, e.g. '
                        '["mon", "tue"], not a str')
    mask = 0
    for day in weekdays:
        name = str(day).lower()[:3]
        if name not in WEEKDAYS:
            raise ValueError(
                f"unknown weekday {day!r}: use {', '.join(WEEKDAYS)}")
        mask |= 1 << WEEKDAYS.index(name)
    return mask


class Engine(WorkMixin):
    """An engine on one SQLite database: the libflow API for Python.

    ``path`` is the database file (created when missing) or ``":memory:"``.
    The keyword arguments are the fields of flow_engine_options:
    ``synchronous`` (:class:`SyncMode` or "normal"/"full"/"off"),
    ``script_memory_limit`` (bytes), ``script_instruction_limit``,
    ``script_cpu_ms``, ``script_log_limit``, ``script_memory_max``,
    ``script_instruction_max``, ``script_cpu_ms_max``, ``busy_timeout_ms``
    (0 keeps each default), ``log`` (a callable ``log(level, message)``
    receiving the engine's and the scripts' log lines) and ``clock`` (a
    callable returning the time as ms since the epoch or an aware
    datetime).  ``now`` fixes the virtual clock at once (see
    :meth:`set_time`) and ``calendar`` is a dict of :meth:`set_calendar`'s
    arguments.  (The allocator option is not offered: every Lua allocation
    would call into Python.)

    Use it as a context manager, or call :meth:`close`::

        with libflow.Engine("cases.db", now="2026-02-02T09:00:00Z") as eng:
            eng.load_service_file("missed_bin.lua")
            case = eng.open_case("missed_bin", {"uprn": "1"})

    Every method returns dicts and lists (JSON decoded), raises a subclass
    of :class:`libflow.Error` when the engine refuses, TypeError or
    ValueError for arguments it cannot send, and :class:`EngineClosed`
    after close.  An engine belongs to one thread; :meth:`post` is the one
    call other threads may make.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"] = ":memory:", *,
                 synchronous: Union[SyncMode, str, int] = SyncMode.NORMAL,
                 script_memory_limit: int = 0,
                 script_instruction_limit: int = 0,
                 script_cpu_ms: int = 0,
                 script_log_limit: int = 0,
                 script_memory_max: int = 0,
                 script_instruction_max: int = 0,
                 script_cpu_ms_max: int = 0,
                 busy_timeout_ms: int = 0,
                 log: Optional[Callable[[LogLevel, str], Any]] = None,
                 clock: Optional[Callable[[], Union[int, _dt.datetime]]]
                 = None,
                 now: Optional[TimeLike] = None,
                 calendar: Optional[Mapping[str, Any]] = None) -> None:
        self._e: Optional[int] = None
        self._keep: List[Any] = []          # every CFUNCTYPE object
        self._pending: Dict[int, Callable[[int, Optional[bytes]], None]] = {}
        self._next_token = 1
        self._posts: Dict[int, Callable[[], Any]] = {}
        self._post_lock = threading.Lock()
        self._actions: Dict[str, ActionHandler] = {}
        self._subs: Dict[int, Subscription] = {}
        self._listener: Optional[Subscriber] = None
        self._driver: Optional["AsyncioHost"] = None
        self._depth = 0                     # callbacks running now
        self._closing = False
        self._deferred: Optional[BaseException] = None
        self.path = os.fspath(path)

        opts = _native.EngineOptions()
        opts.version = _native.ENGINE_OPTIONS_VERSION
        opts.synchronous = self._sync_mode(synchronous)
        for name, value in (
                ("script_memory_limit", script_memory_limit),
                ("script_instruction_limit", script_instruction_limit),
                ("script_cpu_ms", script_cpu_ms),
                ("script_log_limit", script_log_limit),
                ("script_memory_max", script_memory_max),
                ("script_instruction_max", script_instruction_max),
                ("script_cpu_ms_max", script_cpu_ms_max),
                ("busy_timeout_ms", busy_timeout_ms)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, not "
                                f"{type(value).__name__}")
            if not 0 <= value <= _OPTION_LIMITS[name]:
                raise ValueError(f"{name} must be 0 (the default) or a "
                                 f"positive int, not {value}")
            setattr(opts, name, value)
        wself = weakref.ref(self)
        if log is not None:
            if not callable(log):
                raise TypeError("log must be a callable(level, message)")
            opts.log = self._keep_fn(_native.LOG_FN(
                _log_thunk(wself, log)))
        if clock is not None:
            if not callable(clock):
                raise TypeError("clock must be a callable returning ms")
            opts.clock = self._keep_fn(_native.CLOCK_FN(_clock_thunk(clock)))
        if now is not None:
            now_ms = to_ms(now)
        if calendar is not None and not isinstance(calendar, Mapping):
            raise TypeError("calendar must be a dict of set_calendar() "
                            "arguments")

        handle = _c_void_p()
        err = ctypes.create_string_buffer(1024)
        rc = lib.flow_engine_open(_byref(handle), required_text(self.path,
                                                                "path"),
                                  _byref(opts), err, len(err))
        if rc != 0:
            raise make_error(rc, err.value.decode(errors="replace") or
                             f"cannot open {self.path!r}")
        self._e = handle.value
        try:
            self._case_cb = self._keep_fn(_native.CASE_CB(_case_thunk(wself)))
            self._post_cb = self._keep_fn(_native.POST_FN(_post_thunk(wself)))
            if now is not None:
                lib.flow_engine_set_time(self._e, now_ms)
            if calendar is not None:
                self.set_calendar(**calendar)
        except BaseException:
            self.close()
            raise

    # ---- life cycle ----------------------------------------------------

    @staticmethod
    def _sync_mode(value: Union[SyncMode, str, int]) -> int:
        if isinstance(value, str):
            try:
                return int(SyncMode[value.upper()])
            except KeyError:
                raise ValueError(f"synchronous must be normal, full or off, "
                                 f"not {value!r}") from None
        return int(SyncMode(value))

    def _keep_fn(self, fn: Any) -> Any:
        self._keep.append(fn)
        return fn

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._e is None

    def _h(self) -> int:
        """The C handle, or EngineClosed."""
        e = self._e
        if e is None:
            raise EngineClosed(
                f"the engine on {self.path!r} is closed: open a new Engine")
        return e

    def close(self) -> None:
        """Closes the engine and frees everything it owns.  Asynchronous
        calls still queued fail with :class:`Cancelled`; the callbacks are
        released.  Closing twice is a no-op; closing from inside one of the
        engine's own callbacks raises :class:`Misuse`."""
        if self._e is None:
            return
        if self._depth > 0:
            raise Misuse("cannot close the engine from inside one of its "
                         "callbacks: close it after run() returns")
        if self._driver is not None:
            self._driver._detach()
        self._closing = True
        with self._post_lock:   # no post() from another thread past here
            e, self._e = self._e, None
        try:
            lib.flow_engine_close(e)
        finally:
            self._closing = False
            pending, self._pending = self._pending, {}
            for resolve in pending.values():
                resolve(_cancelled_code(), None)
            self._posts.clear()
            self._actions.clear()
            for sub in self._subs.values():
                sub.active = False
            self._subs.clear()
            self._listener = None
            self._keep.clear()   # nothing in C can call them now

    def __enter__(self) -> "Engine":
        self._h()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._e is not None and self._depth == 0:
                self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __repr__(self) -> str:
        state = "closed" if self._e is None else "open"
        return f"<libflow.Engine {self.path!r} {state}>"

    # ---- plumbing --------------------------------------------------------

    def _raise(self, rc: int) -> "Error":
        e = self._e
        msg = lib.flow_errmsg(e).decode(errors="replace") if e else ""
        return make_error(rc, msg)

    def _out(self, fn: Any, *args: Any) -> Optional[bytes]:
        """Calls fn(&out, engine, *args) and returns the owned out text."""
        out = _c_void_p()
        rc = fn(_byref(out), self._h(), *args)
        raw = _take(out.value)
        if rc != 0:
            raise self._raise(rc)
        self._touch()
        return raw

    def _call(self, fn: Any, *args: Any) -> None:
        rc = fn(self._h(), *args)
        if rc != 0:
            raise self._raise(rc)
        self._touch()

    def _touch(self) -> None:
        """Tells an attached asyncio host that the engine may have work."""
        if self._driver is not None:
            self._driver.wake()

    def _defer(self, exc: BaseException) -> None:
        """KeyboardInterrupt or SystemExit in a callback: stop the loop and
        raise it when the C call returns."""
        if self._deferred is None:
            self._deferred = exc
        if self._e is not None:
            lib.flow_engine_stop(self._e)

    def _reraise(self) -> None:
        exc, self._deferred = self._deferred, None
        if exc is not None:
            raise exc

    # ---- time and calendar ---------------------------------------------

    def set_time(self, when: Optional[TimeLike]) -> None:
        """Fixes the engine clock at when (ms since the epoch, an aware
        datetime or ISO 8601 text): a virtual clock for tests and replays.
        None returns to the real (or ``clock=``) clock."""
        ms = _INT64_MIN if when is None else to_ms(when)
        lib.flow_engine_set_time(self._h(), ms)
        self._touch()

    def now_ms(self) -> int:
        """The engine clock now, in ms since the Unix epoch (UTC)."""
        return int(lib.flow_engine_now(self._h()))

    def now(self) -> _dt.datetime:
        """The engine clock now, as an aware UTC datetime."""
        return to_datetime(self.now_ms())

    def advance(self, delta: Union[_dt.timedelta, float]) -> None:
        """Moves the virtual clock on by delta (a timedelta or seconds)."""
        self.set_time(self.now_ms() + duration_ms(delta, "delta"))

    def set_calendar(self, *, zone: Optional[str] = None,
                     opens: Optional[str] = None,
                     closes: Optional[str] = None,
                     weekdays: Union[int, Iterable[str], None] = None,
                     bank_holidays: bool = True,
                     holidays: Iterable[Union[str, _dt.date]] = ()) -> None:
        """Replaces the working-time calendar (flow_engine_set_calendar).

        ``zone`` ("Europe/London", "UTC", "+01:00"), ``opens``/``closes``
        ("09:00"), ``weekdays`` (names such as ``["mon", "tue"]`` or the
        C bit mask, bit 0 = Sunday; None: Monday to Friday),
        ``bank_holidays=False`` to leave out England & Wales bank holidays,
        ``holidays`` extra days off (dates or "YYYY-MM-DD").  None keeps a
        default.  :class:`Invalid` names the option at fault.
        """
        days = [d.isoformat() if isinstance(d, _dt.date) else d
                for d in holidays]
        encoded = [required_text(d, "holiday") for d in days]
        arr = (ctypes.c_char_p * max(len(encoded), 1))(*encoded)
        opts = _native.CalendarOptions(
            _native.CALENDAR_OPTIONS_VERSION, text(zone, "zone"),
            text(opens, "opens"), text(closes, "closes"),
            _weekday_mask(weekdays), 0 if bank_holidays else 1,
            arr if encoded else None, len(encoded))
        self._call(lib.flow_engine_set_calendar, _byref(opts))

    # ---- services ----------------------------------------------------------

    def load_service_file(self, path: Union[str, "os.PathLike[str]"]
                          ) -> Dict[str, Any]:
        """Loads and stores the service script at path; returns
        ``{"name", "version", "sha256", "title", "stored"}`` (stored is
        False when that exact version was there already).
        :class:`ScriptError` lists every problem, :class:`NotFound` when the
        file cannot be read, :class:`AlreadyExists` for the same version
        with different source."""
        result: Dict[str, Any] = decode(self._out(
            lib.flow_service_load_file,
            required_text(os.fspath(path), "path")))
        return result

    def load_service(self, source: str, chunkname: Optional[str] = None
                     ) -> Dict[str, Any]:
        """Loads and stores a service from its Lua source; chunkname is the
        file name errors give (default "service").  Returns what
        :meth:`load_service_file` returns."""
        src = required_text(source, "source")
        result: Dict[str, Any] = decode(self._out(
            lib.flow_service_load_string, src, len(src),
            text(chunkname, "chunkname")))
        return result

    def check_service(self, source: str, chunkname: Optional[str] = None
                      ) -> None:
        """Validates a script without storing it (``flow check``): returns
        None, or raises what loading would."""
        src = required_text(source, "source")
        self._call(lib.flow_service_check, src, len(src),
                   text(chunkname, "chunkname"))

    def lint_service(self, source: str, chunkname: Optional[str] = None
                     ) -> Dict[str, Any]:
        """Static warnings beyond what loading refuses:
        ``{"file", "warnings": [{"line", "message"}]}``."""
        src = required_text(source, "source")
        result: Dict[str, Any] = decode(self._out(
            lib.flow_service_lint, src, len(src),
            text(chunkname, "chunkname")))
        return result

    def service_graph(self, source: str, chunkname: Optional[str] = None,
                      format: str = "dot") -> str:
        """The state diagram of a script as text: format "dot" (Graphviz)
        or "mermaid"."""
        src = required_text(source, "source")
        raw = self._out(lib.flow_service_graph, src, len(src),
                        text(chunkname, "chunkname"), text(format, "format"))
        return (raw or b"").decode()

    def services(self) -> List[Dict[str, Any]]:
        """The stored services: ``[{"name", "version", "title", "sha256",
        "loaded_at"}]``, newest version last."""
        result: List[Dict[str, Any]] = decode(
            self._out(lib.flow_service_list))
        return result

    def service_schema(self, name: str, version: int = 0) -> Dict[str, Any]:
        """The fields of a service as a JSON Schema (2020-12) dict; version
        0 is the newest.  :class:`NotFound` when there is no such
        service."""
        result: Dict[str, Any] = decode(self._out(
            lib.flow_service_schema, required_text(name, "service name"),
            int(version)))
        return result

    # ---- cases ----------------------------------------------------------------

    def open_case(self, service: str, data: Optional[Mapping[str, Any]] = None,
                  *, actor: ActorLike = None) -> Case:
        """Opens a case of the newest version of service with data (a dict;
        None means {}) and returns it.  Raises :class:`NotFound`,
        :class:`ValidationError` (every failing field listed),
        :class:`ScriptError`, :class:`Refused`, ..."""
        svc = required_text(service, "service")
        body = encode_object(data, "case data")
        out = _c_void_p()
        rc = lib.flow_case_open(_byref(out), self._h(), svc, body,
                                actor_arg(actor))
        raw = _take(out.value)
        if rc != 0:
            raise self._raise(rc)
        if self._driver is not None:
            self._driver.wake()
        result: Case = decode(raw)
        return result

    @overload
    def signal(self, case_id: Union[str, int], event: str,
               payload: Optional[Mapping[str, Any]] = ..., *,
               actor: ActorLike = ..., quiet: Literal[False] = ...) -> Case:
        ...

    @overload
    def signal(self, case_id: Union[str, int], event: str,
               payload: Optional[Mapping[str, Any]] = ..., *,
               actor: ActorLike = ..., quiet: Literal[True]) -> None:
        ...

    def signal(self, case_id: Union[str, int], event: str,
               payload: Optional[Mapping[str, Any]] = None, *,
               actor: ActorLike = None, quiet: bool = False
               ) -> Optional[Case]:
        """Applies event to the case with payload (a dict; None means {})
        and returns the case after the transition (None with
        ``quiet=True``, which saves encoding it).  Raises
        :class:`EventNotAccepted`, :class:`PermissionDenied`,
        :class:`Refused`, :class:`CaseClosed`, :class:`ScriptError`,
        :class:`NotFound`, ..., leaving the case as it was."""
        cid = ident(case_id, "case id")
        ev = required_text(event, "event")
        body = encode_object(payload, "payload")
        if quiet:
            rc = lib.flow_case_signal(None, self._h(), cid, ev, body,
                                      actor_arg(actor))
            if rc != 0:
                raise self._raise(rc)
            self._touch()
            return None
        out = _c_void_p()
        rc = lib.flow_case_signal(_byref(out), self._h(), cid, ev, body,
                                  actor_arg(actor))
        raw = _take(out.value)
        if rc != 0:
            raise self._raise(rc)
        self._touch()
        result: Case = decode(raw)
        return result

    def get_case(self, case_id: Union[str, int]) -> Case:
        """The case.  :class:`NotFound`, :class:`Invalid` (malformed id)."""
        result: Case = decode(self._out(lib.flow_case_get,
                                        ident(case_id, "case id")))
        return result

    def history(self, case_id: Union[str, int]) -> List[Dict[str, Any]]:
        """The case's history, oldest first: ``[{"seq", "at", "actor",
        "event", "payload", "from", "to"}]``; seq 1 is the opening."""
        result: List[Dict[str, Any]] = decode(self._out(
            lib.flow_case_history, ident(case_id, "case id")))
        return result

    def timers(self, case_id: Union[str, int]) -> List[Dict[str, Any]]:
        """The case's pending timers, earliest first: ``[{"id", "due_at",
        "event", "payload", "state", "kind"}]``."""
        result: List[Dict[str, Any]] = decode(self._out(
            lib.flow_case_timers, ident(case_id, "case id")))
        return result

    def cases(self, *, service: Optional[str] = None,
              state: Optional[str] = None, status: Optional[str] = None,
              where: Optional[Mapping[str, Any]] = None,
              overdue: bool = False, offset: int = 0,
              limit: Optional[int] = None, page_size: int = 100
              ) -> Iterator[Case]:
        """Iterates over the cases that match, oldest first.

        ``service``, ``state``, ``status`` ("open"/"closed") and ``where``
        (``{field: value}``, all must hold; values are JSON scalars) filter;
        ``overdue=True`` keeps only open cases past their due_at.  The
        iterator fetches ``page_size`` cases per call of flow_case_list,
        moving its offset on, from ``offset``, and stops after ``limit``
        cases (None: all).  Cases opened while iterating may be included;
        arguments are checked at once, the engine's refusals
        (:class:`Invalid`) come with the first page.
        """
        if not isinstance(page_size, int) or not 1 <= page_size <= 10 ** 6:
            raise ValueError("page_size must be an int from 1 to 1000000")
        if not isinstance(offset, int) or offset < 0:
            raise ValueError("offset must be an int >= 0")
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError("limit must be None or an int >= 0")
        conds = list((where or {}).items())
        c_where = (_native.Where * max(len(conds), 1))()
        keep: List[bytes] = []
        for i, (name, value) in enumerate(conds):
            f = required_text(name, "where field")
            v = encode_scalar(value, f"where[{name!r}]")
            keep += [f, v]
            c_where[i].field = f
            c_where[i].value_json = v
        query = _native.CaseQuery(
            _native.CASE_QUERY_VERSION, text(service, "service"),
            text(state, "state"), text(status, "status"),
            c_where if conds else None, len(conds), 0, 0, 1 if overdue else 0)
        self._h()
        return self._pages(query, c_where, keep, offset, limit, page_size)

    def _pages(self, query: Any, c_where: Any, keep: List[bytes], offset: int,
               limit: Optional[int], page_size: int) -> Iterator[Case]:
        left = limit
        while left is None or left > 0:
            size = page_size if left is None else min(page_size, left)
            query.limit = size
            query.offset = offset
            page: List[Case] = decode(self._out(lib.flow_case_list,
                                                _byref(query)))
            yield from page
            offset += len(page)
            if left is not None:
                left -= len(page)
            if len(page) < size:
                return
        del c_where, keep  # the query's strings lived until here

    def list_cases(self, **filters: Any) -> List[Case]:
        """:meth:`cases` as a list (same arguments)."""
        return list(self.cases(**filters))

    def eval(self, code: str, chunkname: Optional[str] = None) -> Any:
        """Runs a chunk of Lua in a fresh sandbox under a handler's rules
        and budgets and returns its first result (None when nothing)."""
        src = required_text(code, "code")
        return decode(self._out(lib.flow_eval, src, len(src),
                                text(chunkname, "chunkname")))

    # ---- asynchronous calls ----------------------------------------------------

    def _token(self, resolve: Callable[[int, Optional[bytes]], None]) -> int:
        token = self._next_token
        self._next_token = token + 1
        self._pending[token] = resolve
        return token

    def _queue_open(self, service: str, data: Optional[Mapping[str, Any]],
                    actor: ActorLike,
                    resolve: Callable[[int, Optional[bytes]], None]) -> None:
        svc = required_text(service, "service")
        body = encode_object(data, "case data")
        act = actor_arg(actor)
        e = self._h()
        token = self._token(resolve)
        rc = lib.flow_case_open_async(e, svc, body, act, self._case_cb,
                                      token)
        if rc != 0:
            del self._pending[token]
            raise self._raise(rc)
        self._touch()

    def _queue_signal(self, case_id: Union[str, int], event: str,
                      payload: Optional[Mapping[str, Any]], actor: ActorLike,
                      resolve: Callable[[int, Optional[bytes]], None]
                      ) -> None:
        cid = ident(case_id, "case id")
        ev = required_text(event, "event")
        body = encode_object(payload, "payload")
        act = actor_arg(actor)
        e = self._h()
        token = self._token(resolve)
        rc = lib.flow_case_signal_async(e, cid, ev, body, act, self._case_cb,
                                        token)
        if rc != 0:
            del self._pending[token]
            raise self._raise(rc)
        self._touch()

    def _future(self) -> Tuple["concurrent.futures.Future[Case]",
                               Callable[[int, Optional[bytes]], None]]:
        fut: "concurrent.futures.Future[Case]" = concurrent.futures.Future()
        fut.set_running_or_notify_cancel()

        def resolve(status: int, raw: Optional[bytes]) -> None:
            if status == 0:
                fut.set_result(decode(raw))
            else:
                fut.set_exception(self._async_error(status))
        return fut, resolve

    def _async_error(self, status: int) -> Error:
        if self._closing or self._e is None:
            return make_error(status, "the engine was closed before the "
                                      "call was carried out")
        return self._raise(status)

    def open_case_async(self, service: str,
                        data: Optional[Mapping[str, Any]] = None, *,
                        actor: ActorLike = None
                        ) -> "concurrent.futures.Future[Case]":
        """Queues an open (flow_case_open_async) and returns a Future of the
        case.  Every call queued before the loop's next round (run(),
        run_nowait(), an :class:`~libflow.aio.AsyncioHost`) is applied in
        one transaction; the Future is done after it is durable.  A refused
        call's Future holds the exception; calls queued when the engine
        closes get :class:`Cancelled` (or the library's code for it).
        Do not wait on ``.result()`` without running the loop."""
        fut, resolve = self._future()
        self._queue_open(service, data, actor, resolve)
        return fut

    def signal_async(self, case_id: Union[str, int], event: str,
                     payload: Optional[Mapping[str, Any]] = None, *,
                     actor: ActorLike = None
                     ) -> "concurrent.futures.Future[Case]":
        """Queues a signal (flow_case_signal_async); as
        :meth:`open_case_async`."""
        fut, resolve = self._future()
        self._queue_signal(case_id, event, payload, actor, resolve)
        return fut

    def send_message_async(self, name: str, key: str,
                           payload: Optional[Mapping[str, Any]] = None, *,
                           ttl: Union[None, float, _dt.timedelta] = None
                           ) -> "concurrent.futures.Future[Dict[str, Any]]":
        """Queues a message (flow_message_send_async): applied with the
        round's other asynchronous calls in one transaction, as
        :meth:`open_case_async`.  The Future holds the message, as
        :meth:`send_message` returns it, or the refusal (a message that
        opens a case which cannot open, say)."""
        msg = required_text(name, "message name")
        k = required_text(key, "message key")
        body = encode_object(payload, "message payload")
        ttl_ms = duration_ms(ttl, "ttl")
        fut, resolve = self._future()
        e = self._h()
        token = self._token(resolve)
        rc = lib.flow_message_send_async(e, msg, k, body, ttl_ms,
                                         self._case_cb, token)
        if rc != 0:
            del self._pending[token]
            raise self._raise(rc)
        self._touch()
        return fut

    @property
    def pending_calls(self) -> int:
        """Asynchronous calls queued and not yet answered."""
        return len(self._pending)

    # ---- the loop -------------------------------------------------------------

    def run(self, mode: Union[RunMode, str, int] = RunMode.DEFAULT) -> bool:
        """Runs the engine's loop (flow_engine_run): DEFAULT until
        :meth:`stop` or nothing is left to wait for, ONCE for one round,
        NOWAIT for what is ready now.  Returns True when work remains.
        :class:`Misuse` from inside a callback.  A KeyboardInterrupt raised
        in a callback stops the loop and is raised here."""
        if isinstance(mode, str):
            try:
                mode = RunMode[mode.upper()]
            except KeyError:
                raise ValueError(f"run mode must be default, once or nowait, "
                                 f"not {mode!r}") from None
        m = int(RunMode(mode))
        rc = lib.flow_engine_run(self._h(), m)
        self._reraise()
        if rc < 0:
            raise self._raise(rc)
        return bool(rc > 0)

    def run_once(self) -> bool:
        """One round of the loop, waiting for work: run(RunMode.ONCE)."""
        return self.run(RunMode.ONCE)

    def run_nowait(self) -> bool:
        """What is ready now, never blocking: run(RunMode.NOWAIT)."""
        return self.run(RunMode.NOWAIT)

    def stop(self) -> None:
        """Makes a running :meth:`run` return after the current round."""
        lib.flow_engine_stop(self._h())

    def fire_due(self) -> int:
        """Fires every timer due by the engine clock and dispatches every
        action request due, until none is left; returns how many."""
        fired = ctypes.c_size_t()
        rc = lib.flow_engine_fire_due(self._h(), _byref(fired))
        self._reraise()
        if rc != 0:
            raise self._raise(rc)
        return int(fired.value)

    def backend_fd(self) -> int:
        """A descriptor that becomes readable when the engine has work
        (poll it, then :meth:`run_nowait`); -1 where there is none."""
        return int(lib.flow_engine_backend_fd(self._h()))

    def backend_timeout(self) -> int:
        """Milliseconds after which the engine wants to run even if the
        descriptor stays quiet (-1: no deadline, 0: now)."""
        return int(lib.flow_engine_backend_timeout(self._h()))

    def post(self, fn: Callable[[], Any]) -> None:
        """Queues fn() to run on the engine's thread during the loop's next
        round; the one method other threads may call.  Work not run before
        :meth:`close` is dropped."""
        if not callable(fn):
            raise TypeError("post() needs a callable")
        with self._post_lock:
            e = self._h()
            token = self._next_token
            self._next_token = token + 1
            self._posts[token] = fn
            rc = lib.flow_engine_post(e, self._post_cb, token)
            if rc != 0:
                del self._posts[token]
                raise make_error(rc, "flow_engine_post failed")

    def uv_loop(self) -> int:
        """The address of the engine's uv_loop_t (its own, created on first
        use, or the host's), for C extensions that run libuv."""
        ptr = lib.flow_engine_uv_loop(self._h())
        if not ptr:
            raise make_error(-2, "flow_engine_uv_loop returned NULL")
        return int(ptr)

    def use_uv_loop(self, loop_address: int) -> None:
        """Makes the engine put its handles on a host's uv_loop_t, given by
        address (flow_engine_use_uv_loop): before any other loop call, and
        the loop must outlive the engine.  Then run() is not used."""
        if isinstance(loop_address, bool) or not isinstance(loop_address, int) \
                or loop_address <= 0:
            raise TypeError("use_uv_loop needs the address of a uv_loop_t")
        self._call(lib.flow_engine_use_uv_loop, loop_address)

    # ---- notifications ----------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Subscription:
        """Adds a subscriber: callback(note) receives every notification as
        a dict (``note["type"]`` is "opened", "transition", "closed",
        "action_requested", "task_created", "incident", ...; see
        include/flow/loop.h).  Returns a :class:`Subscription`.
        :class:`LimitExceeded` past 64 subscribers."""
        if not callable(callback):
            raise TypeError("subscribe() needs a callable(note)")
        thunk = _native.LISTENER_FN(_note_thunk(weakref.ref(self), callback,
                                                "subscriber"))
        sub_id = ctypes.c_int()
        self._call(lib.flow_engine_subscribe, thunk, None, _byref(sub_id))
        # Kept until close: it may be running while it unsubscribes itself.
        self._keep.append(thunk)
        sub = Subscription(self, int(sub_id.value), callback)
        self._subs[sub.id] = sub
        return sub

    def _unsubscribe(self, sub_id: int) -> None:
        self._subs.pop(sub_id, None)
        if self._e is not None:
            self._call(lib.flow_engine_unsubscribe, sub_id)

    def set_listener(self, callback: Optional[Subscriber]) -> None:
        """Sets the one listener (flow_engine_set_listener): it hears only
        what the engine does on its own (timers, actions' answers), not
        what your calls did.  None removes it."""
        e = self._h()
        if callback is None:
            lib.flow_engine_set_listener(
                e, ctypes.cast(ctypes.c_void_p(), _native.LISTENER_FN), None)
        else:
            if not callable(callback):
                raise TypeError("set_listener() needs a callable(note)")
            thunk = _native.LISTENER_FN(_note_thunk(weakref.ref(self),
                                                    callback, "listener"))
            self._keep.append(thunk)
            lib.flow_engine_set_listener(e, thunk, None)
        self._listener = callback

    # ---- actions --------------------------------------------------------------

    def register_action(self, name: str, handler: ActionHandler, *,
                        retry_on_error: bool = True) -> None:
        """Registers handler for the action name ("notify.sms") for the
        engine's lifetime.

        handler(request) gets an :class:`ActionRequest` and answers by
        returning the result (a dict; None means {}), raising
        :class:`ActionFailed` (retryable as it says) or any other exception
        (a failure whose message is the traceback's last line, retryable
        when ``retry_on_error``), or by calling ``request.defer()`` and
        answering later.  Under an :class:`~libflow.aio.AsyncioHost` it may
        be a coroutine function: its awaited result answers.  Raises
        :class:`Invalid` (not an action name), :class:`AlreadyExists`.
        """
        if not callable(handler):
            raise TypeError("register_action() needs a callable(request)")
        n = required_text(name, "action name")
        thunk = _native.ACTION_FN(_action_thunk(weakref.ref(self), handler,
                                                bool(retry_on_error)))
        self._call(lib.flow_action_register, n, thunk, None)
        self._keep.append(thunk)
        self._actions[name] = handler

    def action(self, name: str, *, retry_on_error: bool = True
               ) -> Callable[[ActionHandler], ActionHandler]:
        """Decorator form of :meth:`register_action`::

            @eng.action("notify.sms")
            def send(request): return {"sent": True}
        """
        def register(handler: ActionHandler) -> ActionHandler:
            self.register_action(name, handler, retry_on_error=retry_on_error)
            return handler
        return register

    @property
    def registered_actions(self) -> List[str]:
        """The action names registered on this engine."""
        return sorted(self._actions)

    def complete_action(self, request_id: Union[str, int],
                        result: Optional[Mapping[str, Any]] = None) -> None:
        """Completes the attempt in flight of a request with result (a dict;
        None means {}).  :class:`Conflict` for a late or second answer,
        :class:`NotFound` for an unknown request."""
        rid = ident(request_id, "request id")
        body = encode_object(result, "action result")
        self._call(lib.flow_action_complete, rid, body)

    def fail_action(self, request_id: Union[str, int], message: str, *,
                    retryable: bool = True) -> None:
        """Fails the attempt in flight of a request with message;
        ``retryable`` lets it be tried again while retries last."""
        rid = ident(request_id, "request id")
        self._call(lib.flow_action_fail, rid, 1 if retryable else 0,
                   required_text(message, "message"))

    def actions(self, case_id: Union[str, int, None] = None,
                status: Optional[str] = None) -> List[Dict[str, Any]]:
        """The action requests of a case (None: all) with status (None:
        any; "pending", "waiting", "done", "failed", "incident")."""
        cid = None if case_id is None else ident(case_id, "case id")
        result: List[Dict[str, Any]] = decode(self._out(
            lib.flow_actions_list, cid, text(status, "status")))
        return result
