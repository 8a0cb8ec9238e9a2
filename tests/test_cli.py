"""The ``clutchcall`` command line: version, help, and the dev engine's defaults."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import clutchcall
import clutchcall.dev
from clutchcall.__main__ import DEFAULT_API_KEY, DEFAULT_ORG_ID, main

pytestmark = pytest.mark.timeout(30)


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    version = importlib.metadata.version("clutchcall")
    assert capsys.readouterr().out == f"clutchcall {version}\n"
    assert clutchcall.__version__ == version


def test_no_command_prints_help_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("usage: clutchcall") and "dev" in out.out and "--version" in out.out
    assert out.err == ""


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["dev", "--help"]):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 0
        assert capsys.readouterr().out.startswith("usage: clutchcall")


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["nope"])
    assert done.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_the_command_line_defaults_are_the_engines() -> None:
    assert (DEFAULT_API_KEY, DEFAULT_ORG_ID) == (
        clutchcall.dev.DEFAULT_API_KEY,
        clutchcall.dev.DEFAULT_ORG_ID,
    )


def test_dev_without_its_extra_names_the_extra() -> None:
    # The engine's dependencies made unimportable, as in an install without [dev].
    code = (
        "import sys; sys.modules['uvicorn'] = None\n"
        "from clutchcall.__main__ import main\n"
        "raise SystemExit(main(['dev', '--port', '0']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert "clutchcall dev:" in done.stderr and "pip install 'clutchcall[dev]'" in done.stderr
    assert "Traceback" not in done.stderr
