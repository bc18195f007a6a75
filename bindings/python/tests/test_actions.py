"""Actions: Python callables answering the engine's requests."""

from __future__ import annotations

import unittest
from typing import Any, Dict, List

from .support import DAY_MS, PERMIT, START_MS, EngineTest

import libflow


class Actions(EngineTest):
    def open(self) -> libflow.Case:
        case = self.eng.open_case("permit", {"plate": "AC1",
                                             "phone": "0770"})
        return case

    def test_result_becomes_the_reply(self) -> None:
        seen: List[libflow.ActionRequest] = []

        def send(request: libflow.ActionRequest) -> Dict[str, Any]:
            seen.append(request)
            return {"id": "sms-42"}
        self.eng.register_action("notify.sms", send)
        self.assertEqual(self.eng.registered_actions, ["notify.sms"])
        case = self.open()
        self.assertFalse(seen)  # dispatched by the loop, after the commit
        self.eng.run_nowait()
        self.assertEqual(len(seen), 1)
        req = seen[0]
        self.assertEqual((req.action, req.case_id, req.attempt),
                         ("notify.sms", case["id"], 1))
        self.assertEqual(req.args, {"to": "0770", "plate": "AC1"})
        self.assertTrue(req.key)
        self.assertIn("notify.sms", repr(req))
        now = self.eng.get_case(case["id"])
        self.assertEqual((now["state"], now["data"]["sms_id"]),
                         ("notified", "sms-42"))
        done = self.eng.actions(case["id"], "done")
        self.assertEqual(done[0]["result"], {"id": "sms-42"})

    def test_decorator_and_none_result(self) -> None:
        @self.eng.action("notify.sms")
        def send(request: libflow.ActionRequest) -> None:
            return None
        case = self.open()
        self.eng.run_nowait()
        self.assertEqual(self.eng.actions(case["id"])[0]["result"], {})
        self.assertEqual(self.eng.get_case(case["id"])["state"], "notified")

    def test_exception_fails_with_the_traceback_last_line(self) -> None:
        def send(request: libflow.ActionRequest) -> Dict[str, Any]:
            raise KeyError("phone")
        self.eng.register_action("notify.sms", send)
        case = self.open()
        self.eng.run_nowait()
        req = self.eng.actions(case["id"])[0]
        self.assertEqual(req["error"], "KeyError: 'phone'")
        self.assertEqual(req["status"], "pending")  # retryable: retry.max 1
        self.eng.set_time(START_MS + 60_000)  # past the back-off
        self.eng.run_nowait()
        now = self.eng.get_case(case["id"])
        self.assertEqual(now["state"], "notified")
        self.assertEqual(now["data"]["note"],
                         "retries_exhausted: KeyError: 'phone'")

    def test_not_retryable_failures(self) -> None:
        def send(request: libflow.ActionRequest) -> Dict[str, Any]:
            raise libflow.ActionFailed("no such number")
        self.eng.register_action("notify.sms", send)
        case = self.open()
        self.eng.run_nowait()
        self.assertEqual(self.eng.get_case(case["id"])["data"]["note"],
                         "refused: no such number")
        other = libflow.Engine(":memory:", now=START_MS)
        self.addCleanup(other.close)
        other.load_service(PERMIT)
        other.register_action("notify.sms", lambda r: 1 / 0,
                              retry_on_error=False)
        c2 = other.open_case("permit", {"plate": "Z"})
        other.run_nowait()
        self.assertEqual(other.get_case(c2["id"])["data"]["note"],
                         "refused: ZeroDivisionError: division by zero")

    def test_bad_result_is_a_failure(self) -> None:
        self.eng.register_action("notify.sms", lambda r: ["not", "a dict"],
                                 retry_on_error=False)
        case = self.open()
        self.eng.run_nowait()
        note = self.eng.get_case(case["id"])["data"]["note"]
        self.assertIn("TypeError", note)
        self.assertIn("action result must be a dict", note)

    def test_defer_and_answer_later(self) -> None:
        kept: List[libflow.ActionRequest] = []

        def send(request: libflow.ActionRequest) -> None:
            request.defer()
            kept.append(request)
        self.eng.register_action("notify.sms", send)
        case = self.open()
        self.eng.run_nowait()
        self.assertEqual(self.eng.get_case(case["id"])["state"], "applied")
        self.assertTrue(kept[0].deferred)
        kept[0].complete({"id": "late"})
        self.assertTrue(kept[0].answered)
        self.assertEqual(self.eng.get_case(case["id"])["data"]["sms_id"],
                         "late")
        with self.assertRaises(libflow.Conflict):
            kept[0].complete({"id": "twice"})
        with self.assertRaises(libflow.Conflict):
            self.eng.fail_action(kept[0].id, "too late")

    def test_answer_inside_then_raise(self) -> None:
        def send(request: libflow.ActionRequest) -> None:
            request.fail("gateway busy", retryable=False)
            raise RuntimeError("after answering")
        self.eng.register_action("notify.sms", send)
        case = self.open()
        with self.assertLogs("libflow", "WARNING") as logs:
            self.eng.run_nowait()
        self.assertIn("after answering", "\n".join(logs.output))
        self.assertEqual(self.eng.get_case(case["id"])["data"]["note"],
                         "refused: gateway busy")

    def test_complete_and_fail_by_id(self) -> None:
        case = self.open()
        waiting = self.eng.actions(case["id"], "waiting")
        self.assertEqual(len(waiting), 1)
        with self.assertRaises(libflow.Conflict):  # not in flight yet
            self.eng.complete_action(waiting[0]["id"], {})
        with self.assertRaises(libflow.NotFound):
            self.eng.complete_action("999", {})
        with self.assertRaises(libflow.NotFound):
            self.eng.fail_action(999, "no")
        with self.assertRaises(libflow.Invalid):
            self.eng.complete_action("abc", {})
        with self.assertRaises(TypeError):
            self.eng.complete_action("1", [1])  # type: ignore[arg-type]
        self.assertEqual(self.eng.actions(status="done"), [])
        self.assertEqual(len(self.eng.actions()), 1)

    def test_registration_errors(self) -> None:
        self.sms_ok()
        with self.assertRaises(libflow.AlreadyExists):
            self.eng.register_action("notify.sms", lambda r: {})
        with self.assertRaises(libflow.Invalid):
            self.eng.register_action("Not An Action!", lambda r: {})
        with self.assertRaises(TypeError):
            self.eng.register_action("a.b", "handler")  # type: ignore

    def test_coroutine_handler_outside_asyncio_fails(self) -> None:
        async def send(request: libflow.ActionRequest) -> Dict[str, Any]:
            return {"id": "never"}
        self.eng.register_action("notify.sms", send)
        case = self.open()
        self.eng.run_nowait()
        req = self.eng.actions(case["id"])[0]
        self.assertIn("AsyncioHost", req["error"])
        self.assertEqual(req["status"], "pending")

    def test_timer_fires_at_virtual_time(self) -> None:
        case = self.open()
        self.eng.set_time(START_MS + 3 * DAY_MS)
        self.assertGreaterEqual(self.eng.fire_due(), 1)
        self.assertEqual(self.eng.get_case(case["id"])["state"], "lapsed")


if __name__ == "__main__":
    unittest.main()
