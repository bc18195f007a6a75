"""The benchmark script runs (a tiny size: the real figures are
scripts/bench's)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unittest

from .support import PACKAGE_ROOT


class Bench(unittest.TestCase):
    def test_smoke(self) -> None:
        script = os.path.join(PACKAGE_ROOT, "bench_bins.py")
        proc = subprocess.run([sys.executable, script, "--n", "60",
                               "--group", "25"], capture_output=True,
                              text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        lines = proc.stdout.splitlines()
        self.assertEqual(len(lines), 2, proc.stdout)
        for line, mode in zip(lines, ("sync", "async")):
            self.assertRegex(line, rf"^python {mode}: 240 transitions, "
                                   r"\d+ transitions/s \(60 cases, ")

    def test_usage(self) -> None:
        script = os.path.join(PACKAGE_ROOT, "bench_bins.py")
        proc = subprocess.run([sys.executable, script, "--modes", "warp"],
                              capture_output=True, text=True, timeout=60)
        self.assertEqual(proc.returncode, 2)
        self.assertTrue(re.search("warp", proc.stderr))


if __name__ == "__main__":
    unittest.main()
