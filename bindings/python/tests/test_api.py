"""The public surface: documented, typed, and exercised by the tests."""

from __future__ import annotations

import glob
import inspect
import os
import re
import unittest

from .support import HERE

import libflow
from libflow import aio

PUBLIC_CLASSES = [libflow.Engine, aio.AsyncioHost, libflow.ActionRequest,
                  libflow.Subscription, libflow.Actor, libflow.ActionFailed]


def public_members(cls: type) -> list[str]:
    """Methods and properties a user may call, defined by the package."""
    names = []
    for name, member in vars(cls).items():
        if name.startswith("_") and name not in ("__enter__", "__exit__",
                                                 "__aenter__", "__aexit__"):
            continue
        if callable(member) or isinstance(member, property):
            names.append(name)
    for base in cls.__mro__[1:]:
        if base.__module__.startswith("libflow"):
            names += [n for n in public_members(base) if n not in names]
    return names


class Api(unittest.TestCase):
    def test_every_public_name_has_a_docstring(self) -> None:
        for name in libflow.__all__:
            obj = getattr(libflow, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)
                    or inspect.ismodule(obj)):
                continue  # type aliases and constants
            with self.subTest(name):
                self.assertTrue((obj.__doc__ or "").strip(), name)
        for cls in PUBLIC_CLASSES:
            for name in public_members(cls):
                if name.startswith("__"):
                    continue
                with self.subTest(f"{cls.__name__}.{name}"):
                    member = inspect.getattr_static(cls, name)
                    doc = getattr(member, "__doc__", None)
                    self.assertTrue((doc or "").strip(),
                                    f"{cls.__name__}.{name}")

    def test_every_public_method_is_exercised(self) -> None:
        source = ""
        for path in glob.glob(os.path.join(HERE, "test_*.py")):
            if not path.endswith("test_api.py"):
                with open(path) as f:
                    source += f.read()
        with open(os.path.join(HERE, os.pardir, "examples",
                               "asyncio_host.py")) as f:
            source += f.read()
        for cls in PUBLIC_CLASSES:
            for name in public_members(cls):
                if name.startswith("__"):
                    continue
                with self.subTest(f"{cls.__name__}.{name}"):
                    used = re.search(rf"\.{re.escape(name)}\b", source)
                    self.assertTrue(used, f"no test uses {cls.__name__}."
                                          f"{name}")
        for name in ("parse_time", "format_time", "to_datetime", "version",
                     "run_test_file", "error_class", "error_class_by_name",
                     "error_codes", "make_error"):
            self.assertTrue(re.search(rf"libflow\.{name}\(", source), name)


if __name__ == "__main__":
    unittest.main()
