"""The engine's loop: run modes, stop, posting, descriptors, libuv."""

from __future__ import annotations

import ctypes
import ctypes.util
import select
import threading
import unittest
from typing import Any, Dict, List, Union

from .support import (DAY_MS, MINIMAL_BINS, START_MS, EngineTest, bins_data,
                      engine)

import libflow


class Run(EngineTest):
    def setUp(self) -> None:
        super().setUp()
        self.eng.load_service_file(MINIMAL_BINS)

    def test_modes(self) -> None:
        modes: List[Union[libflow.RunMode, str, int]] = [
            libflow.RunMode.DEFAULT, "default", 0]
        for mode in modes:
            fut = self.eng.open_case_async("missed_bin", bins_data(1))
            self.assertFalse(self.eng.run(mode))
            self.assertEqual(fut.result(timeout=0)["state"], "reported")
        fut = self.eng.open_case_async("missed_bin", bins_data(2))
        self.eng.run_once()
        self.assertTrue(fut.done())
        fut = self.eng.open_case_async("missed_bin", bins_data(3))
        self.eng.run("NOWAIT")
        self.assertTrue(fut.done())
        self.assertFalse(self.eng.run(libflow.RunMode.NOWAIT))
        with self.assertRaises(ValueError):
            self.eng.run("forever")
        with self.assertRaises(ValueError):
            self.eng.run(9)

    def test_work_remains(self) -> None:
        self.eng.open_case("permit", {"plate": "W1"})  # a waiting request
        self.assertTrue(self.eng.run_nowait())

    def test_stop_from_a_callback(self) -> None:
        def stop(note: Dict[str, Any]) -> None:
            self.eng.stop()
        self.eng.subscribe(stop)
        futs = [self.eng.open_case_async("missed_bin", bins_data(i))
                for i in range(3)]
        self.eng.run()
        self.assertTrue(all(f.done() for f in futs))
        self.eng.stop()  # outside a run: no effect

    def test_keyboard_interrupt_in_callback_is_raised_by_run(self) -> None:
        def interrupt(note: Dict[str, Any]) -> None:
            raise KeyboardInterrupt
        self.eng.subscribe(interrupt)
        fut = self.eng.open_case_async("missed_bin", bins_data(1))
        with self.assertRaises(KeyboardInterrupt):
            self.eng.run()
        self.assertEqual(fut.result(timeout=0)["state"], "reported")
        self.assertFalse(self.eng.run_nowait())  # nothing left behind

    def test_fire_due(self) -> None:
        case = self.eng.open_case("permit", {"plate": "F1"})
        self.assertEqual(self.eng.fire_due(), 0)
        self.eng.set_time(START_MS + 2 * DAY_MS)
        self.assertEqual(self.eng.fire_due(), 1)
        self.assertEqual(self.eng.get_case(case["id"])["state"], "lapsed")
        self.assertEqual(self.eng.timers(case["id"]), [])

    def test_backend_fd_and_timeout(self) -> None:
        fd = self.eng.backend_fd()
        self.assertGreaterEqual(fd, 0)
        self.assertEqual(self.eng.backend_timeout(), -1)  # nothing to do
        fut = self.eng.open_case_async("missed_bin", bins_data(1))
        self.assertEqual(self.eng.backend_timeout(), 0)   # a queued call
        self.eng.run_nowait()
        self.assertTrue(fut.done())
        # a post from another thread makes the descriptor readable
        t = threading.Thread(target=self.eng.post, args=(lambda: None,))
        t.start()
        t.join()
        ready, _, _ = select.select([fd], [], [], 5)
        self.assertEqual(ready, [fd])
        self.eng.run_nowait()

    def test_post_from_threads(self) -> None:
        ran: List[int] = []
        owner = threading.get_ident()
        threads = [threading.Thread(
            target=self.eng.post,
            args=(lambda i=i: ran.append(i) if threading.get_ident() == owner
                  else None,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.eng.run_nowait()
        self.assertEqual(sorted(ran), list(range(8)))
        with self.assertRaises(TypeError):
            self.eng.post("nothing")  # type: ignore[arg-type]

    def test_posted_exception_is_logged(self) -> None:
        def broken() -> None:
            raise RuntimeError("posted bug")
        self.eng.post(broken)
        with self.assertLogs("libflow", "ERROR") as logs:
            self.eng.run_nowait()
        self.assertIn("posted bug", "\n".join(logs.output))

    def test_posted_work_dropped_at_close(self) -> None:
        ran: List[int] = []
        self.eng.post(lambda: ran.append(1))
        self.eng.close()
        self.assertEqual(ran, [])


_UV = ctypes.util.find_library("uv")


@unittest.skipIf(_UV is None, "libuv not found by ctypes.util")
class HostUvLoop(unittest.TestCase):
    """flow_engine_use_uv_loop with a uv_loop_t made through ctypes."""

    def test_engine_on_a_host_loop(self) -> None:
        assert _UV is not None
        uv = ctypes.CDLL(_UV)
        uv.uv_loop_size.restype = ctypes.c_size_t
        uv.uv_loop_init.argtypes = [ctypes.c_void_p]
        uv.uv_run.argtypes = [ctypes.c_void_p, ctypes.c_int]
        uv.uv_loop_close.argtypes = [ctypes.c_void_p]
        buf = ctypes.create_string_buffer(uv.uv_loop_size())
        loop = ctypes.addressof(buf)
        self.assertEqual(uv.uv_loop_init(loop), 0)
        try:
            eng = engine()
            try:
                eng.use_uv_loop(loop)
                self.assertEqual(eng.uv_loop(), loop)
                eng.load_service_file(MINIMAL_BINS)
                fut = eng.open_case_async("missed_bin", bins_data(1))
                uv.uv_run(loop, 2)  # UV_RUN_NOWAIT
                self.assertEqual(fut.result(timeout=0)["state"], "reported")
            finally:
                eng.close()
        finally:
            uv.uv_run(loop, 2)
            self.assertEqual(uv.uv_loop_close(loop), 0)

    def test_own_loop_and_misuse(self) -> None:
        with engine() as eng:
            self.assertGreater(eng.uv_loop(), 0)  # attaches its own loop
            with self.assertRaises(libflow.Misuse):
                eng.use_uv_loop(eng.uv_loop())
            with self.assertRaises(TypeError):
                eng.use_uv_loop(0)


if __name__ == "__main__":
    unittest.main()
