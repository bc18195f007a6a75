"""An asyncio host: reports come in, an SMS gateway is awaited, timers fire.

The engine runs inside asyncio's event loop (libflow.aio.AsyncioHost polls
the engine's backend descriptor and honours its timeout).  The service asks
for ``notify.sms`` on every new report; the handler is a coroutine that
awaits a (simulated) gateway and returns its answer, which the engine
delivers to the case as the ``sms_sent`` event.  Reports are opened through
the asynchronous API, so the reports of one loop round share one commit.

Run it with the library on LIBFLOW_LIBRARY (the tests do)::

    LIBFLOW_LIBRARY=build/libflow.so PYTHONPATH=bindings/python \
        python3 bindings/python/examples/asyncio_host.py

It prints one line per case and a summary, and exits 0 when every case
ended where it should.  The engine clock is fixed, so the output is the
same every day.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Dict, List

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                os.pardir))

import libflow  # noqa: E402
from libflow.aio import AsyncioHost  # noqa: E402

SERVICE = r'''
return {
  name = "graffiti", version = 1, title = "Report graffiti",
  fields = {
    street = { type = "string", required = true },
    phone = { type = "string", required = true },
    sms_id = { type = "string" },
  },
  initial = "reported",
  states = {
    reported = {
      enter = function(case)
        flow.call("notify.sms", { to = case.data.phone, street = case.data.street },
                  { reply = "sms_sent", fail = "sms_failed",
                    retry = { max = 2, backoff = "1s" } })
      end,
      on = {
        sms_sent = { internal = true, handler = function(case, ev)
          case.data.sms_id = ev.payload.id
          return "acknowledged"
        end },
        sms_failed = { internal = true, to = "call_back" },
      },
    },
    acknowledged = {
      after = { ["1h"] = "inspect" },
      on = { clean = "cleaned" },
    },
    call_back = { on = { clean = "cleaned" } },
    inspect = { on = { clean = "cleaned" } },
    cleaned = { final = true },
  },
}
'''

STREETS = ["High Street", "Mill Lane", "Station Road", "Church Walk"]


class Gateway:
    """A pretend SMS gateway: answers after a short await; numbers ending in
    0 are refused."""

    def __init__(self) -> None:
        self.sent: List[str] = []

    async def send(self, to: str, key: str) -> Dict[str, Any]:
        await asyncio.sleep(0.001)
        if to.endswith("0"):
            raise libflow.ActionFailed(f"{to}: no such number")
        self.sent.append(key)
        return {"id": f"sms-{len(self.sent)}"}


async def main() -> int:
    """Runs the host; returns the exit status."""
    gateway = Gateway()
    notes: List[str] = []
    with libflow.Engine(":memory:", now="2026-02-02T09:00:00Z") as eng:
        eng.load_service(SERVICE, "graffiti.lua")
        eng.subscribe(lambda note: notes.append(note["type"]))

        @eng.action("notify.sms")
        async def send_sms(request: libflow.ActionRequest) -> Dict[str, Any]:
            return await gateway.send(request.args["to"], request.key)

        async with AsyncioHost(eng) as host:
            # Reports arrive together: one group commit for all of them.
            cases = await asyncio.gather(*[
                host.open_case("graffiti", {"street": street,
                                            "phone": f"0770090012{i}"})
                for i, street in enumerate(STREETS)])
            await host.drain(timeout=10)
            # An hour later the acknowledged ones are due for inspection:
            # the host's timer fires them, nobody calls run().
            eng.advance(3600)
            await host.drain(timeout=10)
            for case in cases:
                now = eng.get_case(case["id"])
                print(f"case {now['id']} {now['data']['street']}: "
                      f"{now['state']} {now['data'].get('sms_id', '-')}")
            done = [await host.signal(c["id"], "clean",
                                      actor=("crew-1", ["crew"]))
                    for c in cases]
        states = sorted(eng.get_case(c["id"])["state"] for c in cases)
        expected = ["call_back", "inspect", "inspect", "inspect"]
        before = sorted(eng.history(c["id"])[-2]["to"] for c in cases)
        print(f"{len(gateway.sent)} sms sent, {notes.count('transition')} "
              f"transitions, all {done[0]['state']}")
        ok = before == expected and states == ["cleaned"] * 4
        print("ok" if ok else f"unexpected: {before} {states}")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
