"""Cases: open, signal, get, history, timers, listing; bad input."""

from __future__ import annotations

import datetime as dt
import decimal
import unittest
from typing import Any, Dict, List

from .support import MINIMAL_BINS, OFFICER, START, EngineTest, bins_data

import libflow


class Cases(EngineTest):
    def test_open_signal_get_history(self) -> None:
        case = self.eng.open_case("permit", {"plate": "AB1"},
                                  actor=libflow.Actor("web"))
        self.assertEqual(case["state"], "applied")
        self.assertEqual(case["status"], "open")
        self.assertEqual(case["data"], {"plate": "AB1"})
        self.assertEqual(case["opened_at"], START)
        self.assertEqual(case["seq"], 1)
        self.assertEqual(self.eng.get_case(case["id"]), case)
        self.assertEqual(self.eng.get_case(int(case["id"])), case)
        after = self.eng.signal(case["id"], "approve", {"why": "ok"},
                                actor=OFFICER)
        self.assertEqual((after["state"], after["status"], after["seq"]),
                         ("approved", "closed", 2))
        history = self.eng.history(case["id"])
        self.assertEqual([h["event"] for h in history], ["open", "approve"])
        self.assertEqual(history[0]["actor"]["id"], "web")
        self.assertIsNone(history[0]["from"])
        self.assertEqual(history[1]["actor"],
                         {"id": "officer-1", "roles": ["officer"]})
        self.assertEqual(history[1]["payload"], {"why": "ok"})
        self.assertEqual((history[1]["from"], history[1]["to"]),
                         ("applied", "approved"))

    def test_quiet_signal(self) -> None:
        case = self.eng.open_case("permit", {"plate": "Q1"})
        self.assertIsNone(self.eng.signal(case["id"], "approve",
                                          actor=OFFICER, quiet=True))
        self.assertEqual(self.eng.get_case(case["id"])["state"], "approved")
        with self.assertRaises(libflow.CaseClosed):
            self.eng.signal(case["id"], "approve", actor=OFFICER, quiet=True)

    def test_timers(self) -> None:
        case = self.eng.open_case("permit", {"plate": "T1"})
        timers = self.eng.timers(case["id"])
        self.assertEqual(len(timers), 1)
        self.assertEqual(timers[0]["due_at"], "2026-02-04T09:00:00Z")
        self.assertEqual(timers[0]["kind"], "after")
        with self.assertRaises(libflow.NotFound):
            self.eng.timers(12345)

    def test_refusal_leaves_case_unchanged(self) -> None:
        case = self.notified_case()
        for event in ("boom", "refuse", "nowhere", "guarded", "bad_data"):
            with self.assertRaises(libflow.Error):
                self.eng.signal(case["id"], event)
        self.assertEqual(self.eng.get_case(case["id"]), case)
        self.assertEqual(len(self.eng.history(case["id"])), case["seq"])

    def test_actor_forms(self) -> None:
        forms: List[libflow.ActorLike] = [
            OFFICER, ("officer-1", ["officer"]),
            {"id": "officer-1", "roles": ["officer"]},
            libflow.Actor("officer-1", ("officer",))]
        for actor in forms:
            case = self.eng.open_case("permit", {"plate": "F"})
            done = self.eng.signal(case["id"], "approve", actor=actor)
            self.assertEqual(done["state"], "approved")
            self.assertEqual(self.eng.history(case["id"])[-1]["actor"]["id"],
                             "officer-1")
        case = self.eng.open_case("permit", {"plate": "F"})
        with self.assertRaises(libflow.PermissionDenied):
            self.eng.signal(case["id"], "approve", actor="officer-1")
        with self.assertRaises(libflow.PermissionDenied):
            self.eng.signal(case["id"], "approve")  # anonymous
        self.assertEqual(self.eng.history(case["id"])[0]["actor"]["id"],
                         "anonymous")

    def test_bad_actors(self) -> None:
        bad: List[Any] = [12, ["id", "roles", "x"], {"id": "a", "role": []},
                          ("a", "officer"), libflow.Actor]
        for actor in bad:
            with self.subTest(actor=actor):
                with self.assertRaises(TypeError):
                    self.eng.open_case("permit", {"plate": "A"}, actor=actor)
        with self.assertRaises(TypeError):
            libflow.Actor(5)  # type: ignore[arg-type]
        with self.assertRaises(TypeError):
            libflow.Actor("a", (1,))  # type: ignore[arg-type]

    def test_bad_input_raises_before_c(self) -> None:
        with self.assertRaises(TypeError):
            self.eng.open_case("permit", ["plate"])  # type: ignore[arg-type]
        with self.assertRaises(TypeError):
            self.eng.open_case("permit", {"plate": object()})
        with self.assertRaises(TypeError):
            self.eng.open_case("permit", {"plate": decimal.Decimal("1")})
        with self.assertRaises(TypeError):
            self.eng.open_case("permit", {"plate": dt.datetime(2026, 1, 1)})
        with self.assertRaises(ValueError):
            self.eng.open_case("permit", {"plate": "A", "n": float("nan")})
        loop: Dict[str, Any] = {}
        loop["self"] = loop
        with self.assertRaises(ValueError):
            self.eng.open_case("permit", loop)
        with self.assertRaises(TypeError):
            self.eng.open_case(None, {})  # type: ignore[arg-type]
        with self.assertRaises(TypeError):
            self.eng.signal(True, "approve")
        with self.assertRaises(TypeError):
            self.eng.signal(1.0, "approve")  # type: ignore[call-overload]
        with self.assertRaises(TypeError):
            self.eng.signal(1, "approve", "{}")  # type: ignore[call-overload]
        self.assertEqual(self.eng.list_cases(), [])  # nothing reached C

    def test_dates_in_data(self) -> None:
        self.eng.load_service_file(MINIMAL_BINS)
        case = self.eng.open_case("missed_bin", bins_data(1))
        self.eng.signal(case["id"], "assign", {"crew": "north"})
        done = self.eng.signal(case["id"], "schedule",
                               {"date": dt.date(2026, 12, 1)})
        self.assertEqual(done["data"]["scheduled_for"], "2026-12-01")
        history = self.eng.history(case["id"])
        at = dt.datetime(2026, 2, 2, 9, tzinfo=dt.timezone.utc)
        self.eng.signal(case["id"], "collect", {"at": at, "tags": {"x"}})
        self.assertEqual(self.eng.history(case["id"])[-1]["payload"],
                         {"at": START, "tags": ["x"]})
        self.assertEqual(len(history), 3)

    def test_unknown_event_and_case(self) -> None:
        case = self.eng.open_case("permit", {"plate": "U1"})
        with self.assertRaises(libflow.EventNotAccepted) as cm:
            self.eng.signal(case["id"], "teleport")
        self.assertIn("teleport", cm.exception.message)
        with self.assertRaises(libflow.NotFound):
            self.eng.signal(999, "approve", actor=OFFICER)
        with self.assertRaises(libflow.Invalid):
            self.eng.get_case("x1")


class Listing(EngineTest):
    def setUp(self) -> None:
        super().setUp()
        self.ids = [self.eng.open_case("permit", {"plate": f"P{i}"})["id"]
                    for i in range(25)]
        for cid in self.ids[:5]:
            self.eng.signal(cid, "approve", actor=OFFICER)

    def test_pages_through_everything(self) -> None:
        got = [c["id"] for c in self.eng.cases(page_size=7)]
        self.assertEqual(got, self.ids)
        self.assertEqual([c["id"] for c in self.eng.cases(page_size=25)],
                         self.ids)
        self.assertEqual([c["id"] for c in self.eng.cases()], self.ids)

    def test_offset_and_limit(self) -> None:
        got = [c["id"] for c in self.eng.cases(offset=3, limit=10,
                                               page_size=4)]
        self.assertEqual(got, self.ids[3:13])
        self.assertEqual(list(self.eng.cases(limit=0)), [])
        self.assertEqual(list(self.eng.cases(offset=100)), [])

    def test_filters(self) -> None:
        closed = self.eng.list_cases(status="closed")
        self.assertEqual([c["id"] for c in closed], self.ids[:5])
        applied = self.eng.list_cases(state="applied", service="permit")
        self.assertEqual(len(applied), 20)
        one = self.eng.list_cases(where={"plate": "P7"})
        self.assertEqual([c["id"] for c in one], [self.ids[7]])
        self.assertEqual(self.eng.list_cases(where={"plate": "P7",
                                                    "phone": None}), one)
        self.assertEqual(self.eng.list_cases(service="other"), [])
        self.assertEqual(self.eng.list_cases(overdue=True), [])

    def test_bad_queries(self) -> None:
        with self.assertRaises(libflow.Invalid):
            list(self.eng.cases(status="sleeping"))
        with self.assertRaises(libflow.Invalid):
            list(self.eng.cases(where={"not a field!": 1}))
        with self.assertRaises(TypeError):
            self.eng.cases(where={"plate": ["P1"]})
        with self.assertRaises(ValueError):
            self.eng.cases(where={"plate": float("inf")})
        with self.assertRaises(ValueError):
            self.eng.cases(page_size=0)
        with self.assertRaises(ValueError):
            self.eng.cases(offset=-1)
        with self.assertRaises(ValueError):
            self.eng.cases(limit=-5)


if __name__ == "__main__":
    unittest.main()
