"""Services: loading, checking, linting, graphs, listing, schemas; eval."""

from __future__ import annotations

import os
import pathlib
import unittest

from .support import MINIMAL_BINS, PERMIT, SOURCE_ROOT, EngineTest

import libflow

UNREACHABLE = r'''
return {
  name = "lonely", version = 1, fields = {},
  initial = "a",
  states = { a = { on = { go = "b" } }, b = { final = true },
             island = { on = { go = "b" } } },
}
'''


class Services(EngineTest):
    def test_load_file_and_again(self) -> None:
        info = self.eng.load_service_file(MINIMAL_BINS)
        self.assertEqual((info["name"], info["version"], info["stored"]),
                         ("missed_bin", 1, True))
        self.assertEqual(len(info["sha256"]), 64)
        again = self.eng.load_service_file(pathlib.Path(MINIMAL_BINS))
        self.assertFalse(again["stored"])
        self.assertEqual(again["sha256"], info["sha256"])

    def test_load_string(self) -> None:
        info = self.eng.load_service(PERMIT, "permit.lua")
        self.assertFalse(info["stored"])  # setUp stored it
        self.assertEqual(info["title"], "Parking permit")
        newer = self.eng.load_service(PERMIT.replace("version = 1",
                                                     "version = 2"))
        self.assertTrue(newer["stored"])
        self.assertEqual(newer["version"], 2)

    def test_script_errors_name_the_chunk(self) -> None:
        with self.assertRaises(libflow.ScriptError) as cm:
            self.eng.load_service("return { name = 'x' }", "x.lua")
        self.assertIn("x.lua", cm.exception.message)
        with self.assertRaises(libflow.ScriptError) as cm:
            self.eng.load_service("error('at load')")
        self.assertIn("at load", cm.exception.message)
        with self.assertRaises(TypeError):
            self.eng.load_service(b"return {}")  # type: ignore[arg-type]
        with self.assertRaises(ValueError):
            self.eng.load_service("return {}\0")

    def test_check_service(self) -> None:
        self.eng.check_service(PERMIT, "permit.lua")  # no exception
        with self.assertRaises(libflow.ScriptError) as cm:
            self.eng.check_service("return {", "typo.lua")
        self.assertIn("typo.lua", cm.exception.message)

    def test_lint_service(self) -> None:
        report = self.eng.lint_service(UNREACHABLE, "lonely.lua")
        self.assertEqual(report["file"], "lonely.lua")
        self.assertTrue(any("island" in w["message"]
                            for w in report["warnings"]), report)
        clean = self.eng.lint_service(PERMIT, "permit.lua")
        self.assertIsInstance(clean["warnings"], list)
        with self.assertRaises(libflow.ScriptError):
            self.eng.lint_service("return 5", "five.lua")

    def test_service_graph(self) -> None:
        dot = self.eng.service_graph(PERMIT, "permit.lua")
        self.assertIn("digraph", dot)
        self.assertIn("notified", dot)
        mermaid = self.eng.service_graph(PERMIT, format="mermaid")
        self.assertIn("stateDiagram-v2", mermaid)
        with self.assertRaises(libflow.Invalid):
            self.eng.service_graph(PERMIT, format="png")

    def test_services_and_schema(self) -> None:
        self.eng.load_service_file(MINIMAL_BINS)
        names = [(s["name"], s["version"]) for s in self.eng.services()]
        self.assertEqual(sorted(names), [("missed_bin", 1), ("permit", 1)])
        schema = self.eng.service_schema("permit")
        self.assertEqual(schema["type"], "object")
        self.assertIn("plate", schema["properties"])
        self.assertEqual(schema["properties"]["plate"]["maxLength"], 10)
        self.assertIn("plate", schema["required"])
        self.assertEqual(self.eng.service_schema("permit", 1), schema)
        with self.assertRaises(libflow.NotFound):
            self.eng.service_schema("permit", 9)
        with self.assertRaises(libflow.NotFound):
            self.eng.service_schema("nothing")

    def test_example_services_load(self) -> None:
        folder = os.path.join(SOURCE_ROOT, "examples", "services")
        for name in ("missed_bin.lua", "bulky_waste.lua"):
            info = self.eng.load_service_file(os.path.join(folder, name))
            self.assertEqual(info["name"], name[:-4])


class Eval(EngineTest):
    def test_eval(self) -> None:
        self.assertEqual(self.eng.eval("return {a = 1, b = {true, 'x'}}"),
                         {"a": 1, "b": [True, "x"]})
        self.assertIsNone(self.eng.eval("local x = 1"))
        with self.assertRaises(libflow.ScriptError) as cm:
            self.eng.eval("error('nope')", "snippet")
        self.assertIn("snippet", cm.exception.message)
        with self.assertRaises(libflow.LimitExceeded):
            self.eng.eval("while true do end")
        with self.assertRaises(libflow.Invalid):
            self.eng.eval("return function() end")


class TestFiles(unittest.TestCase):
    def test_run_test_file(self) -> None:
        path = os.path.join(SOURCE_ROOT, "examples", "services",
                            "missed_bin_test.lua")
        result = libflow.run_test_file(path, coverage=True)
        self.assertEqual(result["file"], path)
        self.assertTrue(result["tests"])
        self.assertEqual({t["status"] for t in result["tests"]}, {"pass"})
        self.assertIn("missed_bin", result["coverage"])
        some = result["tests"][0]["name"]
        only = libflow.run_test_file(path, filter=some,
                                     start="2026-02-02T09:00:00Z",
                                     service_paths=[os.path.dirname(path)],
                                     instruction_limit=50_000_000,
                                     cpu_ms=10_000, memory_limit=64 << 20)
        self.assertTrue(all(some in t["name"] for t in only["tests"]))
        with self.assertRaises(libflow.NotFound):
            libflow.run_test_file("/nonexistent_test.lua")
        with self.assertRaises(libflow.Invalid):
            libflow.run_test_file(path, start="yesterday")


if __name__ == "__main__":
    unittest.main()
