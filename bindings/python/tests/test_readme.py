"""The README's example runs, and prints what the README says."""

from __future__ import annotations

import contextlib
import io
import os
import re
import unittest

from .support import PACKAGE_ROOT


def fenced(text: str, lang: str) -> list[str]:
    """The bodies of the ```lang blocks of a Markdown text."""
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


class Readme(unittest.TestCase):
    def test_example_runs(self) -> None:
        with open(os.path.join(PACKAGE_ROOT, "README.md")) as f:
            text = f.read()
        blocks = fenced(text, "python")
        self.assertEqual(len(blocks), 1)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(blocks[0], "README.md", "exec"), {})
        printed = fenced(text, "text")
        expected = next(b for b in printed if "FLOW_EPERM" in b)
        got = out.getvalue().splitlines()
        want = expected.splitlines()
        # The first line is the engine's own message, whose wording is the
        # C library's to change: only its code and subject are pinned.
        self.assertTrue(got[0].startswith("FLOW_EPERM - event 'collect'"),
                        got[0])
        self.assertIn("crew", got[0])
        self.assertEqual(got[1:], want[1:])


if __name__ == "__main__":
    unittest.main()
