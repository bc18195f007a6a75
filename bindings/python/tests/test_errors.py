"""The exception classes: generated from the library's code table."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import unittest
from typing import Any, Dict, List, Type

from .support import PERMIT, EngineTest, OFFICER, engine

import libflow
from libflow import errors


class GeneratedClasses(unittest.TestCase):
    def test_every_library_code_has_a_class(self) -> None:
        codes = libflow.error_codes()
        self.assertEqual(codes[-1], "FLOW_ERROR")
        self.assertEqual(sorted(codes), list(range(min(codes), 0)))
        for code, name in codes.items():
            cls = libflow.error_class(code)
            self.assertTrue(issubclass(cls, libflow.Error), name)
            self.assertIsNot(cls, libflow.Error, name)
            self.assertEqual(cls.code, code)
            self.assertEqual(cls.code_name, name)
            self.assertTrue(cls.description)
            self.assertTrue(cls.__doc__)
            # reachable under its C name without the prefix
            self.assertIs(getattr(libflow, name[5:]), cls)
            self.assertIs(libflow.error_class_by_name(name), cls)
            self.assertIs(libflow.error_class_by_name(name[5:]), cls)
            self.assertIn(cls.__name__, libflow.__all__)

    def test_nice_names(self) -> None:
        expected: Dict[str, Type[libflow.Error]] = {
            "FLOW_ERROR": libflow.InternalError,
            "FLOW_ENOMEM": libflow.OutOfMemory,
            "FLOW_EINVAL": libflow.Invalid,
            "FLOW_ENOTFOUND": libflow.NotFound,
            "FLOW_EEXIST": libflow.AlreadyExists,
            "FLOW_ESCRIPT": libflow.ScriptError,
            "FLOW_ELIMIT": libflow.LimitExceeded,
            "FLOW_EDATA": libflow.ValidationError,
            "FLOW_EEVENT": libflow.EventNotAccepted,
            "FLOW_EPERM": libflow.PermissionDenied,
            "FLOW_ESTATE": libflow.UnknownState,
            "FLOW_EREFUSED": libflow.Refused,
            "FLOW_ECLOSED": libflow.CaseClosed,
            "FLOW_EIO": libflow.StorageError,
            "FLOW_EBUSY": libflow.Busy,
            "FLOW_EMISUSE": libflow.Misuse,
            "FLOW_ECANCELED": libflow.Cancelled,
            "FLOW_ECONFLICT": libflow.Conflict,
        }
        for name, cls in expected.items():
            self.assertIs(libflow.error_class_by_name(name), cls)
            self.assertEqual(cls.code_name, name)
        self.assertIs(libflow.Denied, libflow.PermissionDenied)
        self.assertTrue(issubclass(libflow.Invalid, ValueError))
        self.assertTrue(issubclass(libflow.NotFound, LookupError))
        self.assertTrue(issubclass(libflow.OutOfMemory, MemoryError))
        self.assertTrue(issubclass(libflow.EngineClosed, libflow.Misuse))
        self.assertEqual(libflow.EngineClosed.code, libflow.Misuse.code)

    def test_unknown_code(self) -> None:
        self.assertIs(libflow.error_class(-9999), libflow.Error)
        self.assertIs(libflow.error_class_by_name("FLOW_ENOPE"), libflow.Error)
        exc = libflow.make_error(-9999, "strange")
        self.assertEqual(exc.code, -9999)
        self.assertEqual(exc.code_name, "FLOW_EUNKNOWN")
        self.assertEqual(exc.description, "unknown error")

    def test_instances_carry_message_and_code(self) -> None:
        for code, name in libflow.error_codes().items():
            exc = libflow.make_error(code, f"what went wrong with {code}")
            self.assertIsInstance(exc, libflow.error_class(code))
            self.assertEqual(exc.code, code)
            self.assertEqual(exc.code_name, name)
            self.assertEqual(exc.message, f"what went wrong with {code}")
            self.assertEqual(str(exc), f"{name}: what went wrong with {code}")
            self.assertIn(type(exc).__name__, repr(exc))
            with self.assertRaises(libflow.Error):
                raise exc
        # no message: the description
        self.assertEqual(libflow.NotFound().message, "not found")
        self.assertEqual(libflow.NotFound().code, -4)

    def test_a_new_library_code_gets_a_class(self) -> None:
        real = getattr(errors, "lib")

        class FakeLib:
            """The real library plus one code it does not know yet."""

            def flow_err_name(self, code: int) -> bytes:
                if code == -19:
                    return b"FLOW_ETIMEOUT"
                name: bytes = real.flow_err_name(code)
                return name

            def flow_strerror(self, code: int) -> bytes:
                if code == -19:
                    return b"timed out"
                desc: bytes = real.flow_strerror(code)
                return desc

        setattr(errors, "lib", FakeLib())
        try:
            generated = errors._bind()
        finally:
            setattr(errors, "lib", real)
        try:
            cls = generated["ETIMEOUT"]
            self.assertTrue(issubclass(cls, libflow.Error))
            self.assertEqual(cls.code, -19)
            self.assertEqual(cls.code_name, "FLOW_ETIMEOUT")
            self.assertEqual(cls.description, "timed out")
            self.assertIs(errors.error_class(-19), cls)
            self.assertIn("FLOW_ETIMEOUT", cls.__doc__ or "")
            # the known classes are still bound to their codes
            self.assertIs(errors.error_class(-4), libflow.NotFound)
        finally:
            errors._BY_CODE.pop(-19, None)
            errors._NAMES.pop(-19, None)
            errors._DESCRIPTIONS.pop(-19, None)


class RaisedByTheEngine(EngineTest):
    """Each class, raised by a real refusal, with the engine's message."""

    def check(self, cls: Type[libflow.Error], fn: Any, *args: Any,
              says: str = "", **kw: Any) -> libflow.Error:
        with self.assertRaises(cls) as cm:
            fn(*args, **kw)
        exc = cm.exception
        self.assertEqual(exc.code, cls.code)
        self.assertEqual(exc.code_name, cls.code_name)
        self.assertIn(says, exc.message)
        self.assertTrue(exc.message)
        return exc

    def test_invalid(self) -> None:
        self.check(libflow.Invalid, self.eng.get_case, "not-a-number")
        self.check(libflow.Invalid, lambda: list(self.eng.cases(
            status="half-open")))

    def test_not_found(self) -> None:
        self.check(libflow.NotFound, self.eng.get_case, 999, says="999")
        self.check(libflow.NotFound, self.eng.open_case, "nothing", {})
        self.check(libflow.NotFound, self.eng.load_service_file,
                   "/nonexistent/x.lua")

    def test_already_exists(self) -> None:
        self.check(libflow.AlreadyExists, self.eng.load_service,
                   PERMIT.replace("Parking permit", "Changed"), "permit.lua")

    def test_script_error(self) -> None:
        self.check(libflow.ScriptError, self.eng.load_service,
                   "return {", "broken.lua", says="broken.lua")
        case = self.notified_case()
        self.check(libflow.ScriptError, self.eng.signal, case["id"], "boom",
                   says="kaboom")

    def test_limit_exceeded(self) -> None:
        case = self.notified_case()
        self.check(libflow.LimitExceeded, self.eng.signal, case["id"], "spin",
                   says="instructions")

    def test_validation_error(self) -> None:
        self.check(libflow.ValidationError, self.eng.open_case, "permit",
                   {"plate": "MUCH-TOO-LONG-PLATE"}, says="plate")
        case = self.notified_case()
        self.check(libflow.ValidationError, self.eng.signal, case["id"],
                   "bad_data", says="amount")

    def test_event_not_accepted(self) -> None:
        case = self.notified_case()
        self.check(libflow.EventNotAccepted, self.eng.signal, case["id"],
                   "no_such_event", says="no_such_event")

    def test_permission_denied(self) -> None:
        case = self.notified_case()
        self.check(libflow.PermissionDenied, self.eng.signal, case["id"],
                   "approve", actor="resident", says="officer")

    def test_unknown_state(self) -> None:
        case = self.notified_case()
        self.check(libflow.UnknownState, self.eng.signal, case["id"],
                   "nowhere", says="no_such_state")

    def test_refused(self) -> None:
        case = self.notified_case()
        self.check(libflow.Refused, self.eng.signal, case["id"], "refuse",
                   says="not today")
        self.check(libflow.Refused, self.eng.signal, case["id"], "guarded",
                   says="guard")

    def test_case_closed(self) -> None:
        case = self.notified_case()
        self.eng.signal(case["id"], "approve", actor=OFFICER)
        self.check(libflow.CaseClosed, self.eng.signal, case["id"], "approve",
                   actor=OFFICER)

    def test_storage_error(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "not-a-db")
            with open(path, "w") as f:
                f.write("this is not an SQLite database, not at all\n" * 50)
            self.check(libflow.StorageError, libflow.Engine, path)

    def test_busy(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "cases.db")
            with engine() as _:
                pass
            eng = libflow.Engine(path, now="2026-02-02T09:00:00Z",
                                 busy_timeout_ms=20)
            self.addCleanup(eng.close)
            eng.load_service(PERMIT, "permit.lua")
            holder = sqlite3.connect(path, isolation_level=None)
            self.addCleanup(holder.close)
            holder.execute("BEGIN IMMEDIATE")
            try:
                self.check(libflow.Busy, eng.open_case, "permit",
                           {"plate": "B1"})
            finally:
                holder.execute("ROLLBACK")
            self.assertEqual(eng.open_case("permit", {"plate": "B1"})["id"],
                             "1")

    def test_misuse(self) -> None:
        seen: List[libflow.Error] = []

        def reenter(note: Dict[str, Any]) -> None:
            try:
                self.eng.run_nowait()
            except libflow.Error as exc:
                seen.append(exc)
        self.eng.subscribe(reenter)
        self.eng.open_case("permit", {"plate": "M1"})
        self.assertTrue(seen)
        self.assertIsInstance(seen[0], libflow.Misuse)
        self.assertIn("inside a callback", seen[0].message)

    def test_cancelled(self) -> None:
        fut = self.eng.open_case_async("permit", {"plate": "C1"})
        self.eng.close()
        exc = fut.exception(timeout=0)
        self.assertIsInstance(exc, libflow.Cancelled)
        assert isinstance(exc, libflow.Error)
        self.assertEqual(exc.code_name, "FLOW_ECANCELED")

    def test_conflict(self) -> None:
        self.sms_ok()
        case = self.eng.open_case("permit", {"plate": "K1"})
        self.eng.run_nowait()
        request = self.eng.actions(case["id"])[0]
        self.assertEqual(request["status"], "done")
        self.check(libflow.Conflict, self.eng.complete_action, request["id"],
                   {"id": "again"})

    def test_internal_and_out_of_memory(self) -> None:
        # Neither can be provoked from Python without a fault-injecting
        # allocator; the codes still map to their classes and the incident
        # an action leaves when it fails for good names FLOW_ERROR.
        self.assertIs(libflow.error_class(libflow.InternalError.code),
                      libflow.InternalError)
        self.assertIs(libflow.error_class(libflow.OutOfMemory.code),
                      libflow.OutOfMemory)
        self.eng.load_service(PERMIT.replace('name = "permit"',
                                             'name = "nofail"')
                              .replace('fail = "sms_failed",', ''),
                              "nofail.lua")

        def refuse(request: libflow.ActionRequest) -> None:
            raise libflow.ActionFailed("gateway says no")
        self.eng.register_action("notify.sms", refuse)
        case = self.eng.open_case("nofail", {"plate": "E1"})
        self.eng.run_nowait()
        incident = self.eng.incidents(case["id"])[0]
        self.assertIs(libflow.error_class_by_name(incident["code"]),
                      libflow.InternalError)
        self.assertIn("gateway says no", incident["error"])


if __name__ == "__main__":
    unittest.main()
