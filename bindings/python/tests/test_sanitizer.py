"""Under the ASan build: LeakSanitizer still sees leaks of libflow's memory
with tests/lsan.supp in force (so the suppressions hide Python's own
allocations only), and an engine closed with callbacks registered leaks
nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import unittest

from .support import PACKAGE_ROOT

UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")

LEAKY = textwrap.dedent('''
    import ctypes, libflow
    from libflow import _native
    eng = libflow.Engine(":memory:", now="2026-02-02T09:00:00Z")
    out = ctypes.c_void_p()
    # an owned string the library returned, deliberately never freed
    _native.lib.flow_service_list(ctypes.byref(out), eng._h())
    eng.close()
''')

CLEAN = textwrap.dedent('''
    import libflow
    for i in range(5):
        eng = libflow.Engine(":memory:", now="2026-02-02T09:00:00Z",
                             log=lambda level, msg: None)
        eng.load_service(open(%r).read())
        eng.register_action("notify.sms", lambda r: {})
        eng.subscribe(lambda note: None)
        eng.set_listener(lambda note: None)
        eng.open_case("missed_bin", {"uprn": "1", "address": "a",
                                     "bin": "refuse"})
        eng.open_case_async("missed_bin", {"uprn": "2", "address": "b",
                                           "bin": "refuse"})
        eng.post(lambda: None)
        eng.close()   # with a queued call, a post and callbacks registered
''')


@unittest.skipUnless(UNDER_ASAN, "only under the ASan build (LD_PRELOAD)")
class Sanitizer(unittest.TestCase):
    def run_python(self, code: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = PACKAGE_ROOT
        return subprocess.run([sys.executable, "-c", code], env=env,
                              capture_output=True, text=True, timeout=120)

    def test_leak_in_libflow_memory_is_reported(self) -> None:
        proc = self.run_python(LEAKY)
        self.assertNotEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("LeakSanitizer: detected memory leaks", proc.stderr)

    def test_closed_engines_with_callbacks_leak_nothing(self) -> None:
        from .support import MINIMAL_BINS
        proc = self.run_python(CLEAN % MINIMAL_BINS)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertNotIn("LeakSanitizer", proc.stderr)


if __name__ == "__main__":
    unittest.main()
