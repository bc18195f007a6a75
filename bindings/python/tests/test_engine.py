"""Opening and closing engines, options, the clock and the calendar."""

from __future__ import annotations

import datetime as dt
import gc
import os
import tempfile
import unittest
import weakref
from typing import Any, Callable, Dict, List, Tuple

from .support import (DAY_MS, MINIMAL_BINS, PERMIT, START, START_MS,
                      EngineTest, bins_data, engine)

import libflow

UTC = dt.timezone.utc

LOGGING = r'''
return {
  name = "chatty", version = 1,
  fields = { n = { type = "integer" } },
  initial = "a",
  states = {
    a = { enter = function(case) flow.log("hello from", case.id) end,
          on = { go = "b" } },
    b = { final = true },
  },
}
'''

TASKY = r'''
return {
  name = "tasky", version = 1, fields = {},
  initial = "a",
  states = {
    a = { enter = function(case)
            flow.task{ name = "t", title = "T", team = "x",
                       due = "1 working day", done = "d" }
          end,
          on = { d = { internal = true, to = "b" } } },
    b = { final = true },
  },
}
'''


class Lifecycle(unittest.TestCase):
    def test_context_manager_closes(self) -> None:
        with engine() as eng:
            self.assertFalse(eng.closed)
            self.assertIn("open", repr(eng))
        self.assertTrue(eng.closed)
        self.assertIn("closed", repr(eng))
        eng.close()  # twice is fine

    def test_closed_engine_raises_not_crashes(self) -> None:
        eng = engine()
        eng.load_service(PERMIT, "permit.lua")
        eng.close()
        calls: List[Tuple[str, Callable[[], Any]]] = [
            ("load_service", lambda: eng.load_service(PERMIT)),
            ("load_service_file", lambda: eng.load_service_file(MINIMAL_BINS)),
            ("check_service", lambda: eng.check_service(PERMIT)),
            ("lint_service", lambda: eng.lint_service(PERMIT)),
            ("service_graph", lambda: eng.service_graph(PERMIT)),
            ("services", eng.services),
            ("service_schema", lambda: eng.service_schema("permit")),
            ("open_case", lambda: eng.open_case("permit", {"plate": "A"})),
            ("signal", lambda: eng.signal(1, "approve")),
            ("get_case", lambda: eng.get_case(1)),
            ("history", lambda: eng.history(1)),
            ("timers", lambda: eng.timers(1)),
            ("cases", lambda: eng.cases()),
            ("list_cases", lambda: eng.list_cases()),
            ("eval", lambda: eng.eval("return 1")),
            ("open_case_async", lambda: eng.open_case_async("permit")),
            ("signal_async", lambda: eng.signal_async(1, "x")),
            ("run", eng.run), ("run_once", eng.run_once),
            ("run_nowait", eng.run_nowait), ("stop", eng.stop),
            ("fire_due", eng.fire_due), ("backend_fd", eng.backend_fd),
            ("backend_timeout", eng.backend_timeout),
            ("post", lambda: eng.post(lambda: None)),
            ("uv_loop", eng.uv_loop),
            ("use_uv_loop", lambda: eng.use_uv_loop(1)),
            ("subscribe", lambda: eng.subscribe(print)),
            ("set_listener", lambda: eng.set_listener(print)),
            ("register_action", lambda: eng.register_action("a.b", print)),
            ("complete_action", lambda: eng.complete_action("1")),
            ("fail_action", lambda: eng.fail_action("1", "no")),
            ("actions", eng.actions),
            ("tasks", eng.tasks),
            ("claim_task", lambda: eng.claim_task(1, actor="a")),
            ("release_task", lambda: eng.release_task(1, actor="a")),
            ("complete_task", lambda: eng.complete_task(1, actor="a")),
            ("cancel_task", lambda: eng.cancel_task(1)),
            ("incidents", eng.incidents),
            ("retry_incident", lambda: eng.retry_incident(1)),
            ("dismiss_incident", lambda: eng.dismiss_incident(1)),
            ("send_message", lambda: eng.send_message("m", "k")),
            ("messages", eng.messages),
            ("set_time", lambda: eng.set_time(START)),
            ("now", eng.now), ("now_ms", eng.now_ms),
            ("advance", lambda: eng.advance(1)),
            ("set_calendar", lambda: eng.set_calendar(zone="UTC")),
            ("__enter__", eng.__enter__),
        ]
        for name, call in calls:
            with self.subTest(name):
                with self.assertRaises(libflow.EngineClosed) as cm:
                    call()
                self.assertIn("closed", str(cm.exception))
                self.assertIsInstance(cm.exception, libflow.Misuse)

    def test_file_database_persists(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "cases.db")
            with libflow.Engine(path, now=START, synchronous="full") as eng:
                self.assertEqual(eng.path, path)
                eng.load_service_file(MINIMAL_BINS)
                case = eng.open_case("missed_bin", bins_data(1))
            with libflow.Engine(path, now=START) as eng:
                self.assertEqual(eng.get_case(case["id"]), case)
                self.assertEqual(eng.services()[0]["name"], "missed_bin")

    def test_options(self) -> None:
        with engine(synchronous=libflow.SyncMode.OFF,
                    script_memory_limit=8 << 20,
                    script_instruction_limit=1_000_000,
                    script_cpu_ms=500, script_log_limit=1024,
                    script_memory_max=16 << 20,
                    script_instruction_max=2_000_000,
                    script_cpu_ms_max=1000, busy_timeout_ms=100) as eng:
            self.assertEqual(eng.eval("return 6 * 7"), 42)
        for mode in ("normal", "FULL", "off", 0, 1, 2):
            with engine(synchronous=mode) as eng:
                self.assertEqual(eng.eval("return 'ok'"), "ok")

    def test_bad_options(self) -> None:
        with self.assertRaises(ValueError):
            engine(synchronous="sometimes")
        with self.assertRaises(ValueError):
            engine(synchronous=7)
        with self.assertRaises(TypeError):
            engine(script_memory_limit="lots")
        with self.assertRaises(TypeError):
            engine(busy_timeout_ms=True)
        with self.assertRaises(ValueError):
            engine(script_cpu_ms=-1)
        with self.assertRaises(ValueError):
            engine(script_cpu_ms=2 ** 40)
        with self.assertRaises(TypeError):
            engine(log="print")
        with self.assertRaises(TypeError):
            engine(clock=12)
        with self.assertRaises(TypeError):
            engine(calendar="UTC")
        with self.assertRaises(TypeError):
            libflow.Engine(12)  # type: ignore[arg-type]
        with self.assertRaises(libflow.Invalid):
            engine(calendar={"zone": "Mars/Olympus"})

    def test_engine_collected_without_close(self) -> None:
        seen: List[Dict[str, Any]] = []
        eng = engine()
        eng.load_service(PERMIT, "permit.lua")
        eng.register_action("notify.sms", lambda r: {"id": "x"})
        eng.subscribe(seen.append)
        ref = weakref.ref(eng)
        del eng
        gc.collect()
        self.assertIsNone(ref())


class Logging(unittest.TestCase):
    def test_log_callback(self) -> None:
        lines: List[Tuple[libflow.LogLevel, str]] = []
        with engine(log=lambda level, msg: lines.append((level, msg))) as eng:
            eng.load_service(LOGGING, "chatty.lua")
            eng.open_case("chatty")
        self.assertTrue(any("hello from 1" in m for _, m in lines), lines)
        self.assertTrue(all(isinstance(lv, libflow.LogLevel)
                            for lv, _ in lines))

    def test_log_callback_that_raises_is_reported(self) -> None:
        def bad(level: libflow.LogLevel, msg: str) -> None:
            raise RuntimeError("log sink down")
        with engine(log=bad) as eng:
            eng.load_service(LOGGING, "chatty.lua")
            with self.assertLogs("libflow", "ERROR") as logs:
                case = eng.open_case("chatty")
            self.assertEqual(case["state"], "a")
        self.assertIn("log sink down", "\n".join(logs.output))


class Clock(unittest.TestCase):
    def test_now_and_set_time(self) -> None:
        with engine() as eng:
            self.assertEqual(eng.now_ms(), START_MS)
            self.assertEqual(eng.now(), dt.datetime(2026, 2, 2, 9, tzinfo=UTC))
            eng.set_time(dt.datetime(2026, 3, 1, 12, 30, tzinfo=UTC))
            self.assertEqual(libflow.format_time(eng.now_ms()),
                             "2026-03-01T12:30:00Z")
            eng.set_time(START_MS + 1)
            self.assertEqual(libflow.format_time(eng.now_ms()),
                             "2026-02-02T09:00:00.001Z")
            eng.set_time("2026-02-02T10:00:00+01:00")
            self.assertEqual(eng.now_ms(), START_MS)
            eng.advance(dt.timedelta(days=1))
            self.assertEqual(eng.now_ms(), START_MS + DAY_MS)
            eng.advance(60)
            self.assertEqual(eng.now_ms(), START_MS + DAY_MS + 60_000)
            with self.assertRaises(ValueError):
                eng.set_time(dt.datetime(2026, 1, 1))  # naive
            with self.assertRaises(libflow.Invalid):
                eng.set_time("next tuesday")
            with self.assertRaises(TypeError):
                eng.set_time(1.5)  # type: ignore[arg-type]

    def test_clock_callback_and_return_to_it(self) -> None:
        fixed = [START_MS + 5000]
        with libflow.Engine(":memory:", clock=lambda: fixed[0]) as eng:
            self.assertEqual(eng.now_ms(), START_MS + 5000)
            eng.set_time(START)
            self.assertEqual(eng.now_ms(), START_MS)
            eng.set_time(None)  # back to the host's clock
            fixed[0] = START_MS + 7000
            self.assertEqual(eng.now_ms(), START_MS + 7000)
        moment = dt.datetime(2026, 5, 5, 5, 5, tzinfo=UTC)
        with libflow.Engine(":memory:", clock=lambda: moment) as eng:
            self.assertEqual(eng.now(), moment)

    def test_clock_that_raises_is_reported(self) -> None:
        def broken() -> int:
            raise RuntimeError("clock down")
        with libflow.Engine(":memory:", clock=broken, now=START) as eng:
            eng.set_time(START)
            self.assertEqual(eng.now_ms(), START_MS)
            eng.set_time(None)
            with self.assertLogs("libflow", "ERROR") as logs:
                self.assertGreater(eng.now_ms(), 0)
        self.assertIn("clock down", "\n".join(logs.output))

    def test_parse_and_format(self) -> None:
        self.assertEqual(libflow.parse_time(START), START_MS)
        self.assertEqual(libflow.format_time(START_MS), START)
        self.assertEqual(libflow.to_datetime(START_MS),
                         dt.datetime(2026, 2, 2, 9, tzinfo=UTC))
        with self.assertRaises(libflow.Invalid):
            libflow.parse_time("2026-02-02 09:00")  # no offset


class Calendar(EngineTest):
    def due_of_task(self) -> str:
        case = self.eng.open_case("tasky")
        due: str = self.eng.tasks(case_id=case["id"])[0]["due_at"]
        return due

    def setUp(self) -> None:
        super().setUp()
        self.eng.load_service(TASKY, "tasky.lua")

    def test_default_calendar(self) -> None:
        self.assertEqual(self.due_of_task(), "2026-02-03T09:00:00Z")

    def test_holidays_and_weekdays(self) -> None:
        self.eng.set_calendar(zone="UTC", holidays=[dt.date(2026, 2, 3),
                                                    "2026-02-04"])
        self.assertEqual(self.due_of_task(), "2026-02-05T09:00:00Z")
        self.eng.set_calendar(zone="UTC", weekdays=["mon", "fri"])
        self.assertEqual(self.due_of_task(), "2026-02-06T09:00:00Z")
        self.eng.set_calendar(zone="UTC", weekdays=0b0000110)  # Mon, Tue
        self.assertEqual(self.due_of_task(), "2026-02-03T09:00:00Z")
        self.eng.set_calendar(zone="+01:00", opens="08:00", closes="16:00",
                              bank_holidays=False)
        self.assertEqual(self.due_of_task(), "2026-02-03T09:00:00Z")

    def test_calendar_keyword(self) -> None:
        with engine(calendar={"zone": "UTC", "holidays": ["2026-02-03"]}) \
                as eng:
            eng.load_service(TASKY, "tasky.lua")
            case = eng.open_case("tasky")
            self.assertEqual(eng.tasks(case_id=case["id"])[0]["due_at"],
                             "2026-02-04T09:00:00Z")

    def test_bad_calendar(self) -> None:
        bad: List[Tuple[Dict[str, Any], str]] = [
                ({"zone": "Atlantis"}, "Atlantis"),
                         ({"opens": "25:00"}, "25:00"),
                         ({"opens": "17:00", "closes": "09:00"}, "closes"),
                ({"holidays": ["2026-13-45"]}, "2026-13-45")]
        for kw, says in bad:
            with self.subTest(kw):
                with self.assertRaises(libflow.Invalid) as cm:
                    self.eng.set_calendar(**kw)
                self.assertIn(says, cm.exception.message)
        with self.assertRaises(ValueError):
            self.eng.set_calendar(weekdays=["someday"])
        with self.assertRaises(ValueError):
            self.eng.set_calendar(weekdays=512)
        with self.assertRaises(TypeError):
            self.eng.set_calendar(weekdays="mon")
        with self.assertRaises(TypeError):
            self.eng.set_calendar(zone=1)  # type: ignore[arg-type]
        # the calendar is unchanged after a refusal
        self.assertEqual(self.due_of_task(), "2026-02-03T09:00:00Z")


class Version(unittest.TestCase):
    def test_versions(self) -> None:
        self.assertEqual(libflow.version(), "0.1.0")
        self.assertTrue(libflow.__version__)
        self.assertTrue(libflow.library_path)


if __name__ == "__main__":
    unittest.main()
