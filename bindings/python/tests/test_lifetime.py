"""Callbacks and engines kept alive exactly as long as the C side needs."""

from __future__ import annotations

import gc
import unittest
import weakref
from typing import Any, Dict, List

from .support import MINIMAL_BINS, PERMIT, bins_data, engine

import libflow


class Lifetime(unittest.TestCase):
    def test_callbacks_survive_collection(self) -> None:
        heard: List[str] = []
        with engine() as eng:
            eng.load_service(PERMIT, "permit.lua")

            def install() -> None:
                # Only the engine refers to these callables afterwards.
                eng.register_action("notify.sms",
                                    lambda r: {"id": "gc-" + r.case_id})
                eng.subscribe(lambda n: heard.append(n["type"]))
                eng.set_listener(lambda n: heard.append("L:" + n["type"]))
            install()
            gc.collect()
            case = eng.open_case("permit", {"plate": "G1"})
            gc.collect()
            eng.run_nowait()
            self.assertEqual(eng.get_case(case["id"])["data"]["sms_id"],
                             "gc-1")
            self.assertIn("opened", heard)
            self.assertIn("L:transition", heard)

    def test_many_engines_closed_with_callbacks(self) -> None:
        refs = []
        for i in range(30):
            eng = engine(log=lambda level, msg: None)
            eng.load_service(PERMIT, "permit.lua")
            eng.load_service_file(MINIMAL_BINS)
            eng.register_action("notify.sms", lambda r: {"id": "x"})
            eng.subscribe(lambda n: None)
            eng.set_listener(lambda n: None)
            eng.open_case("permit", {"plate": f"M{i}"})
            fut = eng.open_case_async("missed_bin", bins_data(i))
            eng.post(lambda: None)
            refs.append(weakref.ref(eng))
            if i % 2:
                eng.close()
                self.assertIsInstance(fut.exception(timeout=0),
                                      libflow.Cancelled)
            del eng
        gc.collect()
        self.assertEqual([r for r in refs if r() is not None], [])

    def test_collected_engine_cancels_its_calls(self) -> None:
        eng = engine()
        eng.load_service_file(MINIMAL_BINS)
        fut = eng.open_case_async("missed_bin", bins_data(1))
        del eng
        gc.collect()
        self.assertIsInstance(fut.exception(timeout=0), libflow.Cancelled)

    def test_request_kept_past_close(self) -> None:
        kept: List[libflow.ActionRequest] = []
        eng = engine()
        eng.load_service(PERMIT, "permit.lua")

        def defer(request: libflow.ActionRequest) -> None:
            request.defer()
            kept.append(request)
        eng.register_action("notify.sms", defer)
        eng.open_case("permit", {"plate": "K1"})
        eng.run_nowait()
        eng.close()
        with self.assertRaises(libflow.EngineClosed):
            kept[0].complete({"id": "late"})
        self.assertFalse(kept[0].answered)

    def test_close_inside_a_callback_is_refused(self) -> None:
        refused: List[BaseException] = []
        with engine() as eng:
            eng.load_service(PERMIT, "permit.lua")

            def close_it(note: Dict[str, Any]) -> None:
                try:
                    eng.close()
                except libflow.Misuse as exc:
                    refused.append(exc)
            sub = eng.subscribe(close_it)
            eng.open_case("permit", {"plate": "C1"})
            sub.unsubscribe()
            self.assertFalse(eng.closed)
            self.assertEqual(eng.get_case(1)["state"], "applied")
        self.assertTrue(refused)
        self.assertIn("inside one of its callbacks", str(refused[0]))

    def test_unsubscribe_after_close(self) -> None:
        eng = engine()
        sub = eng.subscribe(lambda n: None)
        eng.close()
        self.assertFalse(sub.active)
        sub.unsubscribe()  # nothing to do, no error

    def test_handler_state_is_released_at_close(self) -> None:
        class Handler:
            def __call__(self, request: libflow.ActionRequest) -> Any:
                return {}
        handler = Handler()
        ref = weakref.ref(handler)
        eng = engine()
        eng.register_action("notify.sms", handler)
        del handler
        gc.collect()
        self.assertIsNotNone(ref())  # the engine holds it
        eng.close()
        gc.collect()
        self.assertIsNone(ref())     # and lets it go at close


if __name__ == "__main__":
    unittest.main()
