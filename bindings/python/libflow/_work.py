"""Tasks, incidents and messages: the part of :class:`libflow.Engine` that
deals with people's work and the world's notices (include/flow/task.h)."""

from __future__ import annotations

import ctypes
import datetime as _dt
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Union

from . import _native
from ._convert import (ActorLike, actor_arg, decode, duration_ms,
                       encode_object, ident, required_text, text)

__all__ = ["WorkMixin"]

lib = _native.lib
_byref = ctypes.byref
Case = Dict[str, Any]


class WorkMixin:
    """Tasks, incidents and messages; mixed into :class:`libflow.Engine`."""

    if TYPE_CHECKING:  # provided by Engine
        def _out(self, fn: Any, *args: Any) -> Optional[bytes]: ...

        def _call(self, fn: Any, *args: Any) -> None: ...

    def tasks(self, *, case_id: Union[str, int, None] = None,
              team: Optional[str] = None, assignee: Optional[str] = None,
              status: Optional[str] = None, overdue: bool = False
              ) -> List[Dict[str, Any]]:
        """The tasks that match (None: any): case, team, assignee (assigned
        to or claimed by), status ("open", "claimed", "done",
        "cancelled"), ``overdue=True`` for open or claimed ones past due."""
        q = _native.TaskQuery(
            None if case_id is None else ident(case_id, "case id"),
            text(team, "team"), text(assignee, "assignee"),
            text(status, "status"), 1 if overdue else 0)
        result: List[Dict[str, Any]] = decode(self._out(lib.flow_tasks_list,
                                                        _byref(q)))
        return result

    def claim_task(self, task_id: Union[str, int], *, actor: ActorLike
                   ) -> None:
        """Claims a task for actor (who needs an id).  :class:`Conflict`
        when someone else holds it, :class:`PermissionDenied` when it is
        assigned to someone else."""
        self._call(lib.flow_task_claim, ident(task_id, "task id"),
                   actor_arg(actor))

    def release_task(self, task_id: Union[str, int], *, actor: ActorLike
                     ) -> None:
        """Gives a claimed task back (status "open")."""
        self._call(lib.flow_task_release, ident(task_id, "task id"),
                   actor_arg(actor))

    def complete_task(self, task_id: Union[str, int],
                      outcome: Optional[Mapping[str, Any]] = None, *,
                      actor: ActorLike) -> Case:
        """Completes a task with outcome (checked against its form) and
        applies its done event; returns the case after it.
        :class:`ValidationError` names every failing field."""
        result: Case = decode(self._out(
            lib.flow_task_complete, ident(task_id, "task id"),
            encode_object(outcome, "task outcome"), actor_arg(actor)))
        return result

    def cancel_task(self, task_id: Union[str, int], *,
                    actor: ActorLike = None) -> None:
        """Cancels an open or claimed task."""
        self._call(lib.flow_task_cancel, ident(task_id, "task id"),
                   actor_arg(actor))

    def incidents(self, case_id: Union[str, int, None] = None,
                  status: Optional[str] = None) -> List[Dict[str, Any]]:
        """The incidents of a case (None: all) with status (None: any;
        "open", "resolved", "dismissed").  Each has a ``code`` such as
        "FLOW_ESCRIPT" (:func:`libflow.error_class_by_name` gives its
        class) and the ``error`` message."""
        cid = None if case_id is None else ident(case_id, "case id")
        result: List[Dict[str, Any]] = decode(self._out(
            lib.flow_incidents_list, cid, text(status, "status")))
        return result

    def retry_incident(self, incident_id: Union[str, int], *,
                       actor: ActorLike = None) -> Optional[Case]:
        """Applies an open incident's event again; returns the case when it
        succeeds (the incident is resolved), raises the refusal otherwise
        (it stays open)."""
        result: Optional[Case] = decode(self._out(
            lib.flow_incident_retry, ident(incident_id, "incident id"),
            actor_arg(actor)))
        return result

    def dismiss_incident(self, incident_id: Union[str, int], *,
                         actor: ActorLike = None) -> None:
        """Closes an open incident without applying its event."""
        self._call(lib.flow_incident_dismiss,
                   ident(incident_id, "incident id"), actor_arg(actor))

    def send_message(self, name: str, key: str,
                     payload: Optional[Mapping[str, Any]] = None, *,
                     ttl: Union[None, float, _dt.timedelta] = None
                     ) -> Dict[str, Any]:
        """Sends message name with correlation key and payload; ttl (a
        timedelta or seconds; None: 7 days) is how long it waits for a case.
        Returns the message: id, name, key, status ("delivered",
        "buffered", "incident"), case, ..."""
        result: Dict[str, Any] = decode(self._out(
            lib.flow_message_send, required_text(name, "message name"),
            required_text(key, "message key"),
            encode_object(payload, "message payload"),
            duration_ms(ttl, "ttl")))
        return result

    def messages(self, name: Optional[str] = None, key: Optional[str] = None,
                 status: Optional[str] = None) -> List[Dict[str, Any]]:
        """The messages of name and key (None: any) with status (None: any;
        "buffered", "delivered", "expired", "incident", "dismissed")."""
        result: List[Dict[str, Any]] = decode(self._out(
            lib.flow_messages_list, text(name, "message name"),
            text(key, "message key"), text(status, "status")))
        return result
