"""What the tests share: the library, a fixed clock and a test service."""

from __future__ import annotations

import os
import sys
import unittest
from typing import Any, Dict

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)
SOURCE_ROOT = os.path.dirname(os.path.dirname(PACKAGE_ROOT))
if PACKAGE_ROOT not in sys.path:  # run from anywhere, not only via -t
    sys.path.insert(0, PACKAGE_ROOT)

import libflow  # noqa: E402

#: Every test's engine clock: Monday 2 February 2026, 09:00 UTC (a working
#: day in London with no bank holiday near).  No test reads the real clock.
START = "2026-02-02T09:00:00Z"
START_MS = libflow.parse_time(START)
DAY_MS = 86_400_000

MINIMAL_BINS = os.path.join(SOURCE_ROOT, "tests", "bench", "minimal_bins.lua")

#: A parking permit: an action with reply and fail events, a timer, roles,
#: a guard, a correlated message, a task, and handlers that fail each way.
PERMIT = r'''
return {
  name = "permit", version = 1, title = "Parking permit",
  fields = {
    plate = { type = "string", required = true, max = 10 },
    phone = { type = "string" },
    payment_ref = { type = "string", max = 40 },
    amount = { type = "integer", min = 0 },
    sms_id = { type = "string" },
    note = { type = "string" },
    outcome = { type = "string" },
  },
  correlate = { payment_received = "payment_ref" },
  initial = "applied",
  states = {
    applied = {
      enter = function(case)
        flow.call("notify.sms", { to = case.data.phone or "none",
                                  plate = case.data.plate },
                  { reply = "sms_sent", fail = "sms_failed",
                    retry = { max = 1, backoff = "1s" } })
      end,
      after = { ["2d"] = "lapsed" },
      on = {
        sms_sent = { internal = true, handler = function(case, ev)
          case.data.sms_id = ev.payload.id
          return "notified"
        end },
        sms_failed = { internal = true, handler = function(case, ev)
          case.data.note = ev.payload.reason .. ": " .. ev.payload.error
          return "notified"
        end },
        approve = { to = "approved", roles = { "officer" } },
      },
    },
    notified = {
      on = {
        payment_received = { internal = true, handler = function(case, ev)
          case.data.amount = ev.payload.amount
          return "paid"
        end },
        approve = { to = "approved", roles = { "officer" } },
        boom = function(case) error("kaboom") end,
        refuse = function(case) flow.fail("not today") end,
        nowhere = function(case) return "no_such_state" end,
        spin = function(case) while true do end end,
        guarded = { to = "approved", guard = function(case) return false end },
        bad_data = function(case) case.data.amount = -5 end,
      },
    },
    paid = {
      enter = function(case)
        flow.task{ name = "inspect", title = "Inspect " .. case.data.plate,
                   team = "wardens", due = "1 working day",
                   form = { outcome = { type = "enum", values = { "ok", "bad" },
                                        required = true } },
                   done = "inspected" }
      end,
      on = {
        inspected = { internal = true, handler = function(case, ev)
          case.data.outcome = ev.payload.outcome.outcome
          return "approved"
        end },
      },
    },
    approved = { final = true },
    lapsed = { final = true },
  },
}
'''

OFFICER = libflow.Actor("officer-1", ("officer",))
WARDEN = libflow.Actor("warden-7", ("warden",))


def engine(**options: Any) -> libflow.Engine:
    """An in-memory engine on the fixed clock (and a small instruction
    budget, so the runaway-loop test is quick)."""
    options.setdefault("now", START)
    options.setdefault("script_instruction_limit", 200_000)
    return libflow.Engine(":memory:", **options)


def bins_data(i: int) -> Dict[str, Any]:
    """The bins benchmark's data for case i."""
    return {"uprn": f"1000{i}", "address": f"{i} High Street",
            "bin": "refuse", "reported_by": "citizen"}


class EngineTest(unittest.TestCase):
    """A test with a fresh permit engine in self.eng."""

    def setUp(self) -> None:
        self.eng = engine()
        self.addCleanup(self.eng.close)
        self.eng.load_service(PERMIT, "permit.lua")

    def sms_ok(self) -> None:
        """Registers notify.sms answering {"id": "sms-<case>"}."""
        def send(request: libflow.ActionRequest) -> Dict[str, Any]:
            return {"id": "sms-" + request.case_id}
        self.eng.register_action("notify.sms", send)

    def notified_case(self, **data: Any) -> libflow.Case:
        """A permit case moved to "notified" by an answered SMS."""
        if "notify.sms" not in self.eng.registered_actions:
            self.sms_ok()
        data.setdefault("plate", "AB12CDE")
        case = self.eng.open_case("permit", data)
        self.eng.run_nowait()
        case = self.eng.get_case(case["id"])
        self.assertEqual(case["state"], "notified")
        return case
