"""Running an engine inside asyncio.

:class:`AsyncioHost` drives the engine's loop from an asyncio event loop
through the engine's backend descriptor (``loop.add_reader``) and timeout
(a ``call_later`` timer), the way flow_engine_backend_fd and
flow_engine_backend_timeout are meant to be used.  While it is attached:

* ``await host.open_case(...)`` and ``await host.signal(...)`` queue
  asynchronous calls; the calls of one round share one group commit;
* action handlers may be coroutine functions: the host runs each as a task
  and completes (or fails) the request with what it returns (or raises);
* timers and action dispatch happen as the engine's loop falls due,
  without anyone calling :meth:`Engine.run`.

::

    async def main() -> None:
        with libflow.Engine(":memory:", now="2026-02-02T09:00:00Z") as eng:
            eng.load_service(SOURCE)

            @eng.action("notify.sms")
            async def send(request):
                await asyncio.sleep(0)
                return {"sent": True}

            async with libflow.aio.AsyncioHost(eng) as host:
                case = await host.open_case("missed_bin", {"uprn": "1"})
                await host.drain()
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Dict, Mapping, Optional, Set, Union

from ._callbacks import ActionFailed, ActionRequest, describe_exception, \
    logger
from ._convert import ActorLike, decode
from .engine import Case, Engine
from .errors import Error, Misuse

__all__ = ["AsyncioHost"]


class AsyncioHost:
    """Attaches an :class:`Engine` to an asyncio loop (the running one by
    default) until :meth:`close` (or the end of an ``async with`` block).

    An engine has at most one host.  Do not call :meth:`Engine.run` while
    it is attached: the host runs the loop.  Closing the engine detaches
    the host; closing the host cancels the coroutine actions still running
    (their requests stay in flight and are retried when their hold runs
    out, as after a crash).
    """

    def __init__(self, engine: Engine,
                 loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        if engine._driver is not None:
            raise Misuse("the engine already has an AsyncioHost")
        self.engine = engine
        self.loop = loop if loop is not None else asyncio.get_running_loop()
        self._fd = engine.backend_fd()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._scheduled = False
        self._tasks: Set["asyncio.Task[Any]"] = set()
        self._idle: Optional["asyncio.Future[None]"] = None
        self._attached = True
        self.errors: int = 0
        engine._driver = self
        if self._fd >= 0:
            self.loop.add_reader(self._fd, self._pump)
        self.wake()

    # ---- the pump --------------------------------------------------------

    @property
    def attached(self) -> bool:
        """True until :meth:`close` (or the engine's close)."""
        return self._attached

    def wake(self) -> None:
        """Runs the engine's loop soon (the engine calls this after every
        call that may have given it work)."""
        if self._attached and not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._pump)

    def _pump(self) -> None:
        self._scheduled = False
        if not self._attached or self.engine.closed:
            return
        try:
            self.engine.run_nowait()
        except Error:
            self.errors += 1
            logger.exception("libflow: running the engine's loop")
        except Exception:  # pragma: no cover - defensive
            self.errors += 1
            logger.exception("libflow: running the engine's loop")
        self._rearm()
        self._check_idle()

    def _rearm(self) -> None:
        if not self._attached or self.engine.closed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        timeout = self.engine.backend_timeout()
        if timeout == 0:
            self.wake()
        elif timeout > 0:
            self._timer = self.loop.call_later(timeout / 1000.0, self._pump)

    # ---- asynchronous calls ------------------------------------------------

    def _resolver(self) -> "tuple[asyncio.Future[Case], Any]":
        fut: "asyncio.Future[Case]" = self.loop.create_future()

        def resolve(status: int, raw: Optional[bytes]) -> None:
            if fut.cancelled():
                return
            if status == 0:
                fut.set_result(decode(raw))
            else:
                fut.set_exception(self.engine._async_error(status))
        return fut, resolve

    async def open_case(self, service: str,
                        data: Optional[Mapping[str, Any]] = None, *,
                        actor: ActorLike = None) -> Case:
        """Opens a case through the asynchronous API (group commit with the
        other calls of the round) and returns it once durable."""
        fut, resolve = self._resolver()
        self.engine._queue_open(service, data, actor, resolve)
        return await fut

    async def signal(self, case_id: Union[str, int], event: str,
                     payload: Optional[Mapping[str, Any]] = None, *,
                     actor: ActorLike = None) -> Case:
        """Signals a case through the asynchronous API and returns the case
        after the transition, once durable."""
        fut, resolve = self._resolver()
        self.engine._queue_signal(case_id, event, payload, actor, resolve)
        return await fut

    # ---- coroutine actions ---------------------------------------------------

    def _start_action(self, request: ActionRequest,
                      awaitable: Awaitable[Any], retry_on_error: bool) -> None:
        async def run() -> Any:
            return await awaitable
        task = self.loop.create_task(run())
        self._tasks.add(task)

        def done(t: "asyncio.Task[Any]") -> None:
            self._tasks.discard(t)
            self._finish_action(request, t, retry_on_error)
            self._check_idle()
        task.add_done_callback(done)

    def _finish_action(self, request: ActionRequest, task: "asyncio.Task[Any]",
                       retry_on_error: bool) -> None:
        if self.engine.closed or task.cancelled():
            return
        if request.answered:
            return
        exc = task.exception()
        try:
            if exc is None:
                if not request.deferred:
                    request.complete(task.result())
                return
            if isinstance(exc, ActionFailed):
                request.fail(exc.message, retryable=exc.retryable)
            else:
                request.fail(describe_exception(exc),
                             retryable=retry_on_error)
        except (TypeError, ValueError) as bad:
            request.fail(describe_exception(bad), retryable=retry_on_error)
        except Error:
            logger.exception("libflow: answering request %s", request.id)

    @property
    def running_actions(self) -> int:
        """Coroutine action handlers still running."""
        return len(self._tasks)

    # ---- waiting -------------------------------------------------------------

    def _busy(self) -> bool:
        if self.engine.closed:
            return False
        return bool(self._tasks) or self.engine.pending_calls > 0 or \
            self._scheduled or self.engine.backend_timeout() == 0

    def _check_idle(self) -> None:
        if self._idle is not None and not self._idle.done() and \
                not self._busy():
            self._idle.set_result(None)

    async def drain(self, timeout: Optional[float] = None) -> None:
        """Waits until no asynchronous call is queued, no coroutine action
        runs and the engine has nothing to do now (timers in the future
        may remain).  asyncio.TimeoutError after timeout seconds."""
        async def wait() -> None:
            while self._busy():
                self._idle = self.loop.create_future()
                self.wake()
                await self._idle
                # one more round: an answer may have given the engine work
                await asyncio.sleep(0)
        await asyncio.wait_for(wait(), timeout)

    # ---- detaching --------------------------------------------------------------

    def _detach(self) -> None:
        if not self._attached:
            return
        self._attached = False
        if self._fd >= 0:
            self.loop.remove_reader(self._fd)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        if self._idle is not None and not self._idle.done():
            self._idle.set_result(None)
        if self.engine._driver is self:
            self.engine._driver = None

    async def close(self) -> None:
        """Detaches from the engine; cancels the coroutine actions still
        running and waits for them to end."""
        tasks = list(self._tasks)
        self._detach()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> "AsyncioHost":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stats(self) -> Dict[str, int]:
        """Counters: running coroutine actions, queued calls, loop errors."""
        return {"running_actions": len(self._tasks),
                "pending_calls": self.engine.pending_calls,
                "errors": self.errors}
