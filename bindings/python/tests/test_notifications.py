"""Subscriptions and the listener: callables receiving dicts."""

from __future__ import annotations

import unittest
from typing import Any, Dict, List

from .support import DAY_MS, OFFICER, START_MS, EngineTest

import libflow


class Subscriptions(EngineTest):
    def test_subscriber_gets_dicts(self) -> None:
        notes: List[Dict[str, Any]] = []
        sub = self.eng.subscribe(notes.append)
        self.assertTrue(sub.active)
        self.assertIn("active", repr(sub))
        case = self.eng.open_case("permit", {"plate": "S1"})
        types = [n["type"] for n in notes]
        self.assertIn("opened", types)
        self.assertIn("action_requested", types)
        opened = next(n for n in notes if n["type"] == "opened")
        self.assertEqual(opened["case"], case["id"])
        self.assertEqual(opened["cause"], "call")
        self.eng.signal(case["id"], "approve", actor=OFFICER)
        self.assertIn("closed", [n["type"] for n in notes])

    def test_unsubscribe(self) -> None:
        notes: List[Dict[str, Any]] = []
        with self.eng.subscribe(notes.append) as sub:
            self.eng.open_case("permit", {"plate": "S2"})
        self.assertFalse(sub.active)
        count = len(notes)
        self.eng.open_case("permit", {"plate": "S3"})
        self.assertEqual(len(notes), count)
        sub.unsubscribe()  # twice: nothing
        self.assertIn("removed", repr(sub))

    def test_subscriber_unsubscribes_itself(self) -> None:
        notes: List[str] = []
        holder: List[libflow.Subscription] = []

        def once(note: Dict[str, Any]) -> None:
            notes.append(note["type"])
            holder[0].unsubscribe()
        holder.append(self.eng.subscribe(once))
        self.eng.open_case("permit", {"plate": "S4"})
        self.eng.open_case("permit", {"plate": "S5"})
        self.assertEqual(notes, ["opened"])

    def test_exception_in_subscriber_is_logged(self) -> None:
        after: List[str] = []

        def broken(note: Dict[str, Any]) -> None:
            raise ValueError("subscriber bug")
        self.eng.subscribe(broken)
        self.eng.subscribe(lambda note: after.append(note["type"]))
        with self.assertLogs("libflow", "ERROR") as logs:
            case = self.eng.open_case("permit", {"plate": "S6"})
        self.assertEqual(case["state"], "applied")
        self.assertIn("subscriber bug", "\n".join(logs.output))
        self.assertIn("opened", after)  # the next subscriber still heard it

    def test_subscriber_may_call_the_engine(self) -> None:
        states: List[str] = []

        def look(note: Dict[str, Any]) -> None:
            if note["type"] == "opened":
                states.append(self.eng.get_case(note["case"])["state"])
        self.eng.subscribe(look)
        self.eng.open_case("permit", {"plate": "S7"})
        self.assertEqual(states, ["applied"])

    def test_limit(self) -> None:
        subs = [self.eng.subscribe(lambda n: None) for _ in range(64)]
        with self.assertRaises(libflow.LimitExceeded):
            self.eng.subscribe(lambda n: None)
        subs[0].unsubscribe()
        self.eng.subscribe(lambda n: None)
        with self.assertRaises(TypeError):
            self.eng.subscribe("print")  # type: ignore[arg-type]

    def test_listener_hears_the_engine_only(self) -> None:
        heard: List[Dict[str, Any]] = []
        self.eng.set_listener(heard.append)
        case = self.eng.open_case("permit", {"plate": "L1"})
        self.assertEqual(heard, [])  # our own call: its return says it
        self.eng.set_time(START_MS + 3 * DAY_MS)
        self.eng.fire_due()
        types = [n["type"] for n in heard]
        self.assertIn("timer", types)
        self.assertIn("closed", types)
        self.assertEqual(self.eng.get_case(case["id"])["state"], "lapsed")
        self.eng.set_listener(None)
        self.eng.open_case("permit", {"plate": "L2"})
        self.eng.set_time(START_MS + 6 * DAY_MS)
        count = len(heard)
        self.eng.fire_due()
        self.assertEqual(len(heard), count)
        with self.assertRaises(TypeError):
            self.eng.set_listener(5)  # type: ignore[arg-type]

    def test_exception_in_listener_is_logged(self) -> None:
        def broken(note: Dict[str, Any]) -> None:
            raise RuntimeError("listener bug")
        self.eng.set_listener(broken)
        case = self.eng.open_case("permit", {"plate": "L3"})
        self.eng.set_time(START_MS + 3 * DAY_MS)
        with self.assertLogs("libflow", "ERROR") as logs:
            self.eng.fire_due()
        self.assertIn("listener bug", "\n".join(logs.output))
        self.assertEqual(self.eng.get_case(case["id"])["state"], "lapsed")


if __name__ == "__main__":
    unittest.main()
