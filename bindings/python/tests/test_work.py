"""Tasks, messages and incidents."""

from __future__ import annotations

import datetime as dt
import unittest

from .support import DAY_MS, START_MS, WARDEN, EngineTest  # noqa: F401

import libflow


class Tasks(EngineTest):
    def paid_case(self) -> libflow.Case:
        case = self.notified_case(payment_ref="PAY-1")
        msg = self.eng.send_message("payment_received", "PAY-1",
                                    {"amount": 30})
        self.assertEqual((msg["status"], msg["case"]), ("delivered",
                                                        case["id"]))
        now = self.eng.get_case(case["id"])
        self.assertEqual(now["state"], "paid")
        return now

    def test_claim_release_complete(self) -> None:
        case = self.paid_case()
        tasks = self.eng.tasks(case_id=case["id"])
        self.assertEqual(len(tasks), 1)
        task = tasks[0]
        self.assertEqual((task["name"], task["team"], task["status"]),
                         ("inspect", "wardens", "open"))
        self.assertEqual(self.eng.tasks(team="wardens", status="open"),
                         tasks)
        self.assertEqual(self.eng.tasks(team="crews"), [])
        self.eng.claim_task(task["id"], actor=WARDEN)
        self.eng.claim_task(task["id"], actor=WARDEN)  # again: fine
        self.assertEqual(self.eng.tasks(assignee="warden-7")[0]["status"],
                         "claimed")
        with self.assertRaises(libflow.Conflict) as cm:
            self.eng.claim_task(task["id"], actor="warden-8")
        self.assertIn("warden-7", cm.exception.message)
        self.eng.release_task(task["id"], actor=WARDEN)
        self.assertEqual(self.eng.tasks(case_id=case["id"])[0]["status"],
                         "open")
        with self.assertRaises(libflow.Conflict):
            self.eng.release_task(task["id"], actor=WARDEN)
        with self.assertRaises(libflow.ValidationError) as cm2:
            self.eng.complete_task(task["id"], {"outcome": "meh"},
                                   actor=WARDEN)
        self.assertIn("outcome", cm2.exception.message)
        done = self.eng.complete_task(int(task["id"]), {"outcome": "ok"},
                                      actor=WARDEN)
        self.assertEqual((done["state"], done["data"]["outcome"]),
                         ("approved", "ok"))
        final = self.eng.tasks(case_id=case["id"])[0]
        self.assertEqual((final["status"], final["finished_by"]),
                         ("done", "warden-7"))
        with self.assertRaises(libflow.Conflict):
            self.eng.complete_task(task["id"], {"outcome": "ok"},
                                   actor=WARDEN)

    def test_cancel_and_overdue(self) -> None:
        case = self.paid_case()
        task = self.eng.tasks(case_id=case["id"])[0]
        self.assertEqual(self.eng.tasks(overdue=True), [])
        self.eng.set_time(START_MS + 7 * DAY_MS)
        self.assertEqual(self.eng.tasks(overdue=True)[0]["id"], task["id"])
        self.eng.cancel_task(task["id"], actor=WARDEN)
        self.assertEqual(self.eng.tasks(status="cancelled")[0]["id"],
                         task["id"])
        with self.assertRaises(libflow.Conflict):
            self.eng.cancel_task(task["id"])
        with self.assertRaises(libflow.NotFound):
            self.eng.claim_task(999, actor=WARDEN)
        with self.assertRaises(libflow.Invalid):
            self.eng.claim_task(task["id"], actor=None)
        with self.assertRaises(libflow.Invalid):
            self.eng.tasks(status="sleeping")


class Messages(EngineTest):
    def test_buffered_then_delivered(self) -> None:
        msg = self.eng.send_message("payment_received", "PAY-9",
                                    {"amount": 12},
                                    ttl=dt.timedelta(hours=1))
        self.assertEqual(msg["status"], "buffered")
        self.assertEqual(msg["expires_at"], "2026-02-02T10:00:00Z")
        self.assertEqual(self.eng.messages(status="buffered")[0]["id"],
                         msg["id"])
        case = self.notified_case(payment_ref="PAY-9")
        # the case took the key while in "applied": not accepted there
        listed = self.eng.messages(name="payment_received", key="PAY-9")
        self.assertEqual(len(listed), 1)
        self.assertIn(listed[0]["status"], ("incident", "delivered"))
        self.assertEqual(self.eng.messages(key="nothing"), [])
        self.assertTrue(case["id"])

    def test_expiry_and_bad_input(self) -> None:
        msg = self.eng.send_message("payment_received", "PAY-10", ttl=60)
        self.eng.set_time(START_MS + 120_000)
        self.eng.fire_due()
        self.assertEqual(self.eng.messages(status="expired")[0]["id"],
                         msg["id"])
        with self.assertRaises(libflow.Invalid):
            self.eng.send_message("payment_received", "")
        with self.assertRaises(TypeError):
            self.eng.send_message("payment_received", "K",
                                  {"amount": object()})
        with self.assertRaises(TypeError):
            self.eng.send_message("m", "k", ttl="1h")  # type: ignore


class Incidents(EngineTest):
    def test_retry_and_dismiss(self) -> None:
        case = self.eng.open_case("permit", {"plate": "I1",
                                             "payment_ref": "PAY-2"})
        msg = self.eng.send_message("payment_received", "PAY-2",
                                    {"amount": 7})
        self.assertEqual(msg["status"], "incident")
        incident = self.eng.incidents(case["id"], "open")[0]
        self.assertEqual(incident["source"], "message")
        self.assertIs(libflow.error_class_by_name(incident["code"]),
                      libflow.EventNotAccepted)
        with self.assertRaises(libflow.EventNotAccepted):
            self.eng.retry_incident(incident["id"])
        self.assertEqual(self.eng.incidents(status="open")[0]["attempts"], 2)
        self.sms_ok()
        self.eng.run_nowait()
        fixed = self.eng.retry_incident(incident["id"], actor="officer-1")
        assert fixed is not None
        self.assertEqual(fixed["state"], "paid")
        self.assertEqual(self.eng.incidents(status="resolved")[0]["id"],
                         incident["id"])
        with self.assertRaises(libflow.Conflict):
            self.eng.dismiss_incident(incident["id"])

        other = self.eng.open_case("permit", {"plate": "I2",
                                              "payment_ref": "PAY-3"})
        sent = self.eng.send_message("payment_received", "PAY-3")
        self.assertEqual(sent["status"], "incident")
        open_ = self.eng.incidents(other["id"], "open")
        self.assertEqual(len(open_), 1)
        self.eng.dismiss_incident(open_[0]["id"], actor="officer-1")
        self.assertEqual(self.eng.incidents(status="open"), [])
        gone = self.eng.incidents(status="dismissed")[0]
        self.assertEqual((gone["id"], gone["finished_by"]),
                         (open_[0]["id"], "officer-1"))
        self.assertEqual(self.eng.messages(key="PAY-3")[0]["status"],
                         "dismissed")
        with self.assertRaises(libflow.NotFound):
            self.eng.retry_incident(999)
        with self.assertRaises(libflow.Invalid):
            self.eng.incidents(status="sleeping")
        self.assertEqual(len(self.eng.incidents()), 2)


if __name__ == "__main__":
    unittest.main()
