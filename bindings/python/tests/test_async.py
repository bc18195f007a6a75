"""Asynchronous calls (futures, group commit) and the asyncio host."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import unittest
from typing import Any, Dict, List

from .support import (DAY_MS, MINIMAL_BINS, PACKAGE_ROOT, START_MS,
                      EngineTest, bins_data)

import libflow
from libflow.aio import AsyncioHost


class Futures(EngineTest):
    def setUp(self) -> None:
        super().setUp()
        self.eng.load_service_file(MINIMAL_BINS)

    def test_group_commit(self) -> None:
        notes: List[str] = []
        self.eng.subscribe(lambda n: notes.append(n["type"]))
        futs = [self.eng.open_case_async("missed_bin", bins_data(i))
                for i in range(10)]
        self.assertEqual(self.eng.pending_calls, 10)
        self.assertFalse(any(f.done() for f in futs))
        self.assertEqual(notes, [])  # nothing before the commit
        self.eng.run_nowait()
        self.assertEqual(self.eng.pending_calls, 0)
        ids = [f.result(timeout=0)["id"] for f in futs]
        self.assertEqual(ids, [str(i) for i in range(1, 11)])
        self.assertEqual(notes.count("opened"), 10)
        sigs = [self.eng.signal_async(cid, "assign", {"crew": "c"},
                                      actor=("bench", ["crew"]))
                for cid in ids]
        self.eng.run_nowait()
        self.assertEqual({s.result(timeout=0)["state"] for s in sigs},
                         {"assigned"})

    def test_open_then_signal_in_one_round(self) -> None:
        opened = self.eng.open_case_async("missed_bin", bins_data(1))
        signalled = self.eng.signal_async("1", "assign", {"crew": "n"})
        self.eng.run_nowait()
        self.assertEqual(opened.result(timeout=0)["id"], "1")
        self.assertEqual(signalled.result(timeout=0)["state"], "assigned")

    def test_refused_call_does_not_fail_the_others(self) -> None:
        good = self.eng.open_case_async("missed_bin", bins_data(1))
        bad = self.eng.open_case_async("missed_bin", {"uprn": "1"})
        wrong = self.eng.signal_async(77, "assign")
        self.eng.run_nowait()
        self.assertEqual(good.result(timeout=0)["state"], "reported")
        exc = bad.exception(timeout=0)
        self.assertIsInstance(exc, libflow.ValidationError)
        assert isinstance(exc, libflow.Error)
        self.assertIn("address", exc.message)
        self.assertIsInstance(wrong.exception(timeout=0), libflow.NotFound)

    def test_messages_in_one_round(self) -> None:
        self.eng.load_service("""
return { name = "paid", version = 1, initial = "waiting",
  fields = { ref = { type = "string" }, amount = { type = "integer" } },
  correlate = { payment = { field = "ref", opens = true } },
  states = { waiting = { on = { payment = { internal = true,
    handler = function(case, ev) case.data.amount = ev.payload.amount
      return "paid" end } } },
    paid = { final = true } } }
""", "paid.lua")
        first = self.eng.send_message_async("payment", "R1", {"amount": 5})
        second = self.eng.send_message_async("payment", "R2",
                                             {"amount": "five"})
        self.assertFalse(first.done())
        self.eng.run_nowait()
        m = first.result(timeout=0)
        self.assertEqual((m["status"], m["opened"], m["case"]),
                         ("delivered", True, "1"))
        self.assertEqual(self.eng.get_case("1")["state"], "paid")
        self.assertIsInstance(second.exception(timeout=0),
                              libflow.ValidationError)
        with self.assertRaises(TypeError):
            self.eng.send_message_async("payment", "R3", {"x": object()})

    def test_bad_arguments_raise_at_once(self) -> None:
        with self.assertRaises(TypeError):
            self.eng.open_case_async("missed_bin", {"x": object()})
        with self.assertRaises(TypeError):
            self.eng.signal_async(1, "assign", {"x": {1, object()}})
        with self.assertRaises(libflow.Invalid):
            self.eng.signal_async("not-an-id", "assign")
        self.assertEqual(self.eng.pending_calls, 0)

    def test_done_callback_exception_is_logged(self) -> None:
        fut = self.eng.open_case_async("missed_bin", bins_data(1))

        def broken(f: Any) -> None:
            raise RuntimeError("done-callback bug")
        fut.add_done_callback(broken)
        with self.assertLogs("concurrent.futures", "ERROR"):
            self.eng.run_nowait()
        self.assertTrue(fut.done())


SLOW = r'''
return {
  name = "slow", version = 1,
  fields = { n = { type = "integer" }, answer = { type = "string" } },
  initial = "asking",
  states = {
    asking = {
      enter = function(case)
        flow.call("lookup.thing", { n = case.data.n },
                  { reply = "answered", fail = "failed" })
      end,
      after = { ["1h"] = "late" },
      on = {
        answered = { internal = true, handler = function(case, ev)
          case.data.answer = ev.payload.answer
          return "done"
        end },
        failed = { internal = true, handler = function(case, ev)
          case.data.answer = ev.payload.error
          return "done"
        end },
      },
    },
    done = { final = true },
    late = { final = true },
  },
}
'''


class Host(EngineTest):
    def setUp(self) -> None:
        super().setUp()
        self.eng.load_service_file(MINIMAL_BINS)
        self.eng.load_service(SLOW, "slow.lua")

    def test_open_and_signal_with_await(self) -> None:
        async def main() -> List[str]:
            async with AsyncioHost(self.eng) as host:
                self.assertTrue(host.attached)
                host.wake()  # harmless at any time
                cases = await asyncio.gather(*[
                    host.open_case("missed_bin", bins_data(i))
                    for i in range(5)])
                after = await host.signal(cases[0]["id"], "assign",
                                          {"crew": "c1"})
                with self.assertRaises(libflow.EventNotAccepted):
                    await host.signal(cases[1]["id"], "collect")
                states = [after["state"]]
            self.assertFalse(host.attached)
            self.assertIsNone(self.eng._driver)
            return states + [c["state"] for c in cases]
        self.assertEqual(asyncio.run(main()),
                         ["assigned"] + ["reported"] * 5)

    def test_coroutine_actions(self) -> None:
        async def lookup(request: libflow.ActionRequest) -> Dict[str, Any]:
            await asyncio.sleep(0.001)
            n = request.args["n"]
            if n == 3:
                raise libflow.ActionFailed("three is unlucky")
            if n == 4:
                raise RuntimeError("lookup crashed")
            return {"answer": f"n={n}"}
        self.eng.register_action("lookup.thing", lookup,
                                 retry_on_error=False)

        async def main() -> List[str]:
            async with AsyncioHost(self.eng) as host:
                cases = [self.eng.open_case("slow", {"n": i})
                         for i in range(5)]
                await host.drain(timeout=10)
                self.assertEqual(host.running_actions, 0)
                self.assertEqual(host.stats()["errors"], 0)
            return [self.eng.get_case(c["id"])["data"]["answer"]
                    for c in cases]
        self.assertEqual(asyncio.run(main()),
                         ["n=0", "n=1", "n=2", "three is unlucky",
                          "RuntimeError: lookup crashed"])

    def test_timers_fire_under_asyncio(self) -> None:
        async def main() -> str:
            async with AsyncioHost(self.eng) as host:
                case = await host.open_case("slow", {"n": 1})  # no handler
                self.eng.set_time(START_MS + DAY_MS)
                await host.drain(timeout=10)
                state: str = self.eng.get_case(case["id"])["state"]
                return state
        self.assertEqual(asyncio.run(main()), "late")

    def test_closing_the_host_cancels_running_actions(self) -> None:
        started = []

        async def forever(request: libflow.ActionRequest) -> Dict[str, Any]:
            started.append(request.id)
            await asyncio.sleep(3600)
            return {}
        self.eng.register_action("lookup.thing", forever)

        async def main() -> None:
            host = AsyncioHost(self.eng)
            self.eng.open_case("slow", {"n": 1})
            for _ in range(100):
                await asyncio.sleep(0)
                if started:
                    break
            self.assertEqual(host.running_actions, 1)
            await host.close()
            self.assertEqual(host.running_actions, 0)
        asyncio.run(main())
        self.assertEqual(started, ["1"])
        self.assertEqual(self.eng.actions()[0]["status"], "pending")

    def test_closing_the_engine_detaches(self) -> None:
        async def main() -> None:
            host = AsyncioHost(self.eng)
            with self.assertRaises(libflow.Misuse):
                AsyncioHost(self.eng)
            pending = asyncio.ensure_future(host.open_case(
                "missed_bin", bins_data(1)))
            await asyncio.sleep(0)
            self.eng.close()
            self.assertFalse(host.attached)
            with self.assertRaises(libflow.Cancelled):
                await pending
            await host.close()
        asyncio.run(main())


class Example(unittest.TestCase):
    def test_asyncio_host_example(self) -> None:
        script = os.path.join(PACKAGE_ROOT, "examples", "asyncio_host.py")
        env = dict(os.environ)
        env["PYTHONPATH"] = PACKAGE_ROOT
        proc = subprocess.run([sys.executable, script], env=env,
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 0, proc.stderr + proc.stdout)
        lines = proc.stdout.splitlines()
        self.assertEqual(lines[-1], "ok")
        self.assertIn("3 sms sent", lines[-2])
        self.assertEqual(lines[0], "case 1 High Street: call_back -")


if __name__ == "__main__":
    unittest.main()
