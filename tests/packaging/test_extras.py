"""The base install needs no extra: nothing on the control or data plane's import
path touches av, numpy, starlette or uvicorn, and the optional parts say which
extra they need."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from clutchcall._extras import EXTRAS

pytestmark = pytest.mark.timeout(60)

#: Modules only the extras install (trio is also what httpcore probes for, if present).
OPTIONAL = ("av", "numpy", "starlette", "uvicorn")

# Run in a fresh interpreter: an import hook refuses the optional modules (as if
# they were not installed) and records every attempt to import one.
BLOCKER = """
import importlib.abc, json, sys

attempts = []

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            attempts.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

BLOCKED = set(json.loads(sys.argv[1]))
sys.meta_path.insert(0, Refuse())
"""


def run_blocked(blocked: tuple[str, ...], body: str) -> subprocess.CompletedProcess[str]:
    code = BLOCKER + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", code, json.dumps(blocked)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_base_import_paths_never_import_an_extra() -> None:
    done = run_blocked(
        OPTIONAL,
        """
        import clutchcall
        from clutchcall import AsyncVoice, Voice
        import clutchcall.bridge, clutchcall.moqnet, clutchcall.moqt, clutchcall.transport
        import clutchcall.errors, clutchcall.testing, clutchcall.__main__
        from clutchcall.moqnet import MoqtClient
        voice = Voice(api_key="k", org_id="org_a", base_url="http://127.0.0.1:1")
        voice.audio_bridge  # the data plane's entry point
        voice.close()
        print(json.dumps(attempts))
        """,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


@pytest.mark.parametrize(
    ("module", "extra", "missing"),
    [
        ("clutchcall.audio", "audio", "av"),
        ("clutchcall.audio", "audio", "numpy"),
        ("clutchcall.audio.codecs", "audio", "av"),
        ("clutchcall.dev", "dev", "starlette"),
        ("clutchcall.dev", "dev", "uvicorn"),
        ("clutchcall.dev", "dev", "av"),
        ("clutchcall.dev.engine", "dev", "numpy"),
        ("clutchcall.testing.plugin", "dev", "uvicorn"),
        ("clutchcall.demo", "dev", "numpy"),
        ("clutchcall.demo", "dev", "starlette"),
    ],
)
def test_an_optional_part_names_its_extra(module: str, extra: str, missing: str) -> None:
    done = run_blocked(
        (missing,),
        f"""
        from clutchcall.errors import ClutchCallError, MissingExtraError
        try:
            import {module}
        except ImportError as exc:
            assert isinstance(exc, MissingExtraError) and isinstance(exc, ClutchCallError)
            print(json.dumps([str(exc), exc.extra, exc.name]))
        """,
    )
    assert done.returncode == 0, done.stderr
    message, named_extra, name = json.loads(done.stdout)
    assert named_extra == extra and name == missing
    assert f"pip install 'clutchcall[{extra}]'" in message and repr(missing) in message
    assert missing in EXTRAS[extra]


def test_a_missing_module_no_extra_provides_is_reraised_as_is() -> None:
    done = run_blocked(
        (),
        """
        from clutchcall._extras import raise_missing_extra
        try:
            try:
                import not_a_dependency_of_clutchcall
            except ModuleNotFoundError as exc:
                raise_missing_extra(exc, feature="clutchcall.audio", extra="audio")
        except ModuleNotFoundError as exc:
            print(json.dumps([type(exc).__name__, exc.name]))
        """,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["ModuleNotFoundError", "not_a_dependency_of_clutchcall"]


def test_the_extras_in_pyproject_match() -> None:
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    base = " ".join(project["dependencies"])
    for module in OPTIONAL:
        assert module not in base
    for extra, modules in EXTRAS.items():
        named = " ".join(optional[extra])
        for module in modules:
            found = module in named or (
                extra == "dev" and "clutchcall[audio]" in named and module in EXTRAS["audio"]
            )
            assert found, (extra, module)
