"""clutchcall.moqt stays sans-IO: no sockets, threads, clocks or event loops."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import clutchcall.moqt
from clutchcall.moqt import ALPN, DRAFT_14, SUPPORTED_VERSIONS
from clutchcall.moqt import version as version_module

PACKAGE_DIR = Path(clutchcall.moqt.__file__).parent
FORBIDDEN_MODULES = {
    "anyio",
    "asyncio",
    "trio",
    "socket",
    "ssl",
    "select",
    "selectors",
    "threading",
    "_thread",
    "concurrent",
    "multiprocessing",
    "subprocess",
    "time",
    "datetime",
    "aioquic",
}


def test_no_io_module_is_imported_by_the_source() -> None:
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{path.name} imports {name}"


def test_importing_the_package_loads_no_io_module() -> None:
    """In a fresh interpreter, ``import clutchcall.moqt`` (and so the top-level
    ``clutchcall`` package it lives in) loads no I/O module."""
    probe = ("aioquic", "anyio", "httpx", "asyncio", "trio", "socket")
    script = f"import clutchcall.moqt, sys; print(sorted(m for m in {probe!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    assert out.strip() == "[]"


def test_no_module_of_the_package_loads_an_io_module() -> None:
    modules = [f"clutchcall.moqt.{info.name}" for info in pkgutil.iter_modules([str(PACKAGE_DIR)])]
    assert "clutchcall.moqt.session" in modules
    script = (
        "import sys, json\n"
        "import clutchcall\n"
        "before = set(sys.modules)\n"
        f"for name in {modules!r}: __import__(name)\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    loaded = {name.split(".")[0] for name in json.loads(out)}
    assert "clutchcall" in loaded
    assert loaded.isdisjoint(FORBIDDEN_MODULES), loaded & FORBIDDEN_MODULES


def test_version_and_alpn_live_in_one_place() -> None:
    assert DRAFT_14 == 0xFF00000E == 0xFF000000 + 14
    assert SUPPORTED_VERSIONS == (DRAFT_14,)
    assert ALPN == "moq-00"
    assert version_module.VERSION_NAMES[DRAFT_14] == "draft-ietf-moq-transport-14"
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        if path.name != "version.py":
            text = path.read_text().lower()
            assert "0xff00000e" not in text, path.name
            assert '"moq-00"' not in text, path.name
