"""The callbacks C calls: one factory per C callback type.

Each thunk holds a weak reference to its engine, so an engine nobody refers
to is closed (by ``__del__``) rather than kept alive by its own callbacks;
the engine keeps the thunk objects themselves (ctypes CFUNCTYPE instances)
in ``_keep`` until it is closed.  No exception leaves a thunk: ctypes would
print it and carry on, and the C library could not tell.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from ._callbacks import (ActionFailed, ActionRequest, Subscriber,
                         describe_exception, logger)
from ._convert import decode, to_ms
from .errors import Error

if TYPE_CHECKING:  # pragma: no cover
    from .engine import ActionHandler, Engine, LogLevel

def _cancelled_code() -> int:
    from .errors import Cancelled
    return Cancelled.code


def _case_thunk(wself: "weakref.ref[Engine]") -> Callable[..., None]:
    def thunk(e: int, status: int, case_json: Optional[bytes],
              payload: Optional[int]) -> None:
        self = wself()
        if self is None or payload is None:
            return
        resolve = self._pending.pop(payload, None)
        if resolve is None:
            return
        self._depth += 1
        try:
            resolve(status, case_json)
        except BaseException as exc:  # a Future's done-callback, say
            if isinstance(exc, Exception):
                logger.exception("libflow: completing an asynchronous call")
            else:
                self._defer(exc)
        finally:
            self._depth -= 1
    return thunk


def _post_thunk(wself: "weakref.ref[Engine]") -> Callable[..., None]:
    def thunk(e: int, payload: Optional[int]) -> None:
        self = wself()
        if self is None or payload is None:
            return
        with self._post_lock:
            fn = self._posts.pop(payload, None)
        if fn is None:
            return
        self._depth += 1
        try:
            fn()
        except Exception:
            logger.exception("libflow: posted function %r raised", fn)
        except BaseException as exc:
            self._defer(exc)
        finally:
            self._depth -= 1
    return thunk


def _note_thunk(wself: "weakref.ref[Engine]", callback: Subscriber,
                what: str) -> Callable[..., None]:
    def thunk(e: int, event_json: bytes, payload: Optional[int]) -> None:
        self = wself()
        if self is None:
            return
        self._depth += 1
        try:
            callback(decode(event_json))
        except Exception:
            logger.exception("libflow: %s %r raised", what, callback)
        except BaseException as exc:
            self._defer(exc)
        finally:
            self._depth -= 1
    return thunk


def _log_thunk(wself: "weakref.ref[Engine]",
               log: Callable[["LogLevel", str], Any]) -> Callable[..., None]:
    from .engine import LogLevel

    def thunk(e: int, level: int, msg: bytes, payload: Optional[int]) -> None:
        try:
            try:
                lvl = LogLevel(level)
            except ValueError:
                lvl = LogLevel.ERROR
            log(lvl, msg.decode(errors="replace"))
        except Exception:
            logger.exception("libflow: log callback %r raised", log)
        except BaseException as exc:
            self = wself()
            if self is not None:
                self._defer(exc)
    return thunk


def _clock_thunk(clock: Callable[[], Union[int, _dt.datetime]]
                 ) -> Callable[..., int]:
    def thunk(payload: Optional[int]) -> int:
        try:
            value = clock()
            return to_ms(value) if not isinstance(value, int) else value
        except Exception:
            logger.exception("libflow: clock callback %r raised; using the "
                             "real clock", clock)
            return int(time.time() * 1000)
    return thunk


def _action_thunk(wself: "weakref.ref[Engine]", handler: "ActionHandler",
                  retry_on_error: bool) -> Callable[..., None]:
    def thunk(e: int, req_p: Any, payload: Optional[int]) -> None:
        self = wself()
        if self is None:
            return
        self._depth += 1
        try:
            _dispatch(self, handler, retry_on_error, req_p.contents)
        except BaseException as exc:  # pragma: no cover - last resort
            if isinstance(exc, Exception):
                logger.exception("libflow: dispatching an action")
            else:
                self._defer(exc)
        finally:
            self._depth -= 1
    return thunk


def _dispatch(self: "Engine", handler: "ActionHandler", retry_on_error: bool,
              req: Any) -> None:
    request = ActionRequest(
        self, req.id.decode(), req.action.decode(), req.case_id.decode(),
        decode(req.args_json) if req.args_json else {},
        (req.key or b"").decode(), int(req.attempt))
    try:
        result = handler(request)
        if inspect.isawaitable(result):
            driver = self._driver
            if driver is None:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                raise ActionFailed(
                    f"the handler of {request.action} is a coroutine, but "
                    "the engine runs outside asyncio: attach a "
                    "libflow.aio.AsyncioHost", retryable=True)
            driver._start_action(request, result, retry_on_error)
            return
        if request.answered or request.deferred:
            return
        request.complete(result)
    except ActionFailed as exc:
        _answer_failure(request, exc.message, exc.retryable)
    except Exception as exc:
        logger.debug("libflow: action %s raised", request.action,
                     exc_info=True)
        _answer_failure(request, describe_exception(exc), retry_on_error)
    except BaseException as exc:
        _answer_failure(request, describe_exception(exc), True)
        self._defer(exc)


def _answer_failure(request: ActionRequest, message: str,
                    retryable: bool) -> None:
    """Fails the request unless it was answered already."""
    if request.answered:
        logger.warning("libflow: action %s (request %s) raised after it was "
                       "answered: %s", request.action, request.id, message)
        return
    try:
        request.fail(message or "the action handler failed",
                     retryable=retryable)
    except Error:
        logger.exception("libflow: failing request %s", request.id)
