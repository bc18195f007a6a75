"""Actions, subscriptions and the small objects callbacks hand to Python."""

from __future__ import annotations

import logging
import traceback
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

__all__ = ["ActionRequest", "ActionFailed", "Subscription", "logger",
           "describe_exception"]

#: The logger that reports exceptions raised in subscribers, listeners, log
#: and clock callbacks (they cannot be returned to anyone).
logger = logging.getLogger("libflow")


def describe_exception(exc: BaseException) -> str:
    """The last line of exc's traceback: ``"KeyError: 'phone'"``."""
    lines = traceback.format_exception_only(type(exc), exc)
    return lines[-1].strip() if lines else type(exc).__name__


class ActionFailed(Exception):
    """Raise from an action handler to fail the attempt with a message.

    ``retryable=False`` (the default) says retrying cannot help (no such
    property, card declined): the script's ``fail`` event follows at once.
    ``retryable=True`` lets the engine try again after its back-off while
    the script's ``retry.max`` allows.  Any other exception a handler raises
    fails the attempt too, with the traceback's last line as the message,
    retryable as the handler was registered (``retry_on_error``).
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class ActionRequest:
    """One attempt of an action request, as the handler receives it.

    Attributes:
        id: the request id (for :meth:`Engine.complete_action`).
        action: the registered action name (``"notify.sms"``).
        case_id: the case that asked.
        args: the script's arguments (a dict).
        key: the idempotency key, the same at every attempt and restart.
        attempt: 1 for the first attempt.

    A handler answers by returning a dict (the result), by raising, or by
    calling :meth:`complete` / :meth:`fail` itself.  To answer later (after
    the handler returned) call :meth:`defer` first, keep the object and call
    :meth:`complete` or :meth:`fail` when the work is done, from the
    engine's thread.
    """

    __slots__ = ("engine", "id", "action", "case_id", "args", "key",
                 "attempt", "answered", "deferred")

    def __init__(self, engine: "Engine", id: str, action: str, case_id: str,
                 args: Dict[str, Any], key: str, attempt: int) -> None:
        self.engine = engine
        self.id = id
        self.action = action
        self.case_id = case_id
        self.args = args
        self.key = key
        self.attempt = attempt
        #: True once complete() or fail() was called
        self.answered = False
        #: True once defer() was called
        self.deferred = False

    def complete(self, result: Optional[Dict[str, Any]] = None) -> None:
        """Completes the attempt with result (a dict; None means {}): the
        script's ``reply`` event gets it as ``ev.payload``."""
        self.engine.complete_action(self.id, result)
        self.answered = True

    def fail(self, message: str, *, retryable: bool = True) -> None:
        """Fails the attempt with message; ``retryable`` lets the engine try
        again while the script's retries last."""
        self.engine.fail_action(self.id, message, retryable=retryable)
        self.answered = True

    def defer(self) -> None:
        """Says the handler answers later: its return value is then not
        taken as the result."""
        self.deferred = True

    def __repr__(self) -> str:
        return (f"ActionRequest(id={self.id!r}, action={self.action!r}, "
                f"case_id={self.case_id!r}, attempt={self.attempt})")


Subscriber = Callable[[Dict[str, Any]], Any]


class Subscription:
    """A subscriber added by :meth:`Engine.subscribe`.

    Use :meth:`unsubscribe` (or a ``with`` block) to remove it.  The
    callable receives each notification as a dict (its ``"type"`` says
    which, see include/flow/loop.h); what it raises is logged on the
    ``libflow`` logger and never reaches the engine.
    """

    def __init__(self, engine: "Engine", sub_id: int,
                 callback: Subscriber) -> None:
        self.engine = engine
        #: the engine's subscriber id
        self.id = sub_id
        #: the subscribed callable
        self.callback = callback
        #: True while subscribed
        self.active = True

    def unsubscribe(self) -> None:
        """Removes the subscriber (no-op when already removed or the engine
        is closed)."""
        if self.active:
            self.active = False
            self.engine._unsubscribe(self.id)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.unsubscribe()

    def __repr__(self) -> str:
        state = "active" if self.active else "removed"
        return f"<libflow.Subscription {self.id} {state}>"
