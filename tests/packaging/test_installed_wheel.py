"""The built wheel, installed without extras in a fresh virtual environment, as a
user gets it: its types reach the user's type checker, and it places, follows,
transfers and hangs up calls and runs an audio bridge against a dev engine.

The wheel is built and installed once per test session (``pip`` from the
project's environment installs into a venv made without pip, so the pip cache
and the machine's package index settings apply). Nothing from the source tree is
importable there: each check runs from a temporary directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mypy.version
import pytest

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Installed:
    python: Path
    bin: Path
    site_packages: Path
    wheel: Path


def run(
    args: list[str | Path],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def checked(
    args: list[str | Path],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    done = run(args, cwd=cwd, env=env, timeout=180)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done


def user_env() -> dict[str, str]:
    """The environment of a user's shell: no path into this source tree, no SDK settings."""
    drop = ("PYTHONPATH", "MYPYPATH", "PYTHONHOME", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("CLUTCHCALL")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("installed-wheel")
    dist = root / "dist"
    checked([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, ROOT])
    (wheel,) = dist.glob("clutchcall-*.whl")
    venv = root / "venv"
    checked([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    checked(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            python,
            "install",
            "--quiet",
            wheel,
            f"mypy=={mypy.version.__version__}",
        ],
        env=user_env(),
    )
    purelib = checked(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root
    ).stdout.strip()
    return Installed(python, venv / "bin", Path(purelib), wheel)


def test_the_wheel_holds_both_type_markers(installed: Installed) -> None:
    import zipfile

    names = set(zipfile.ZipFile(installed.wheel).namelist())
    assert {"clutchcall/py.typed", "clutchcall_api/py.typed"} <= names
    assert (installed.site_packages / "clutchcall_api" / "py.typed").is_file()


def test_no_extra_is_installed(installed: Installed) -> None:
    done = checked(
        [
            installed.python,
            "-c",
            "import importlib.util as u, json; "
            "print(json.dumps([m for m in ('av', 'numpy', 'starlette', 'uvicorn', 'trio') "
            "if u.find_spec(m)]))",
        ],
        cwd=installed.bin,
        env=user_env(),
    )
    assert json.loads(done.stdout) == []


USER_SCRIPT = """
from clutchcall import AsyncVoice, CallStatus, Voice


def sync_status(voice: Voice) -> CallStatus:
    call = voice.calls.get("CA" + "0" * 32)
    reveal_type(call.status)
    return call.status


async def async_status(voice: AsyncVoice) -> None:
    call = await voice.calls.get("CA" + "0" * 32)
    reveal_type(call.status)
    raw = await voice.calls.with_raw_response.get(call.sid)
    reveal_type(raw.parse())


def wrong() -> None:
    CallStatus.NOT_A_MEMBER
"""


def mypy_on_user_script(installed: Installed, workdir: Path) -> str:
    script = workdir / "user_app.py"
    script.write_text(textwrap.dedent(USER_SCRIPT))
    cache = workdir / "mypy-cache"
    done = run(
        [installed.python, "-m", "mypy", "--strict", "--cache-dir", cache, script.name],
        cwd=workdir,
        env=user_env(),
        timeout=180,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 2: mypy itself failed
    return done.stdout


def test_a_users_mypy_strict_sees_the_installed_types(installed: Installed, tmp_path: Path) -> None:
    out = mypy_on_user_script(installed, tmp_path)
    revealed = [line for line in out.splitlines() if "Revealed type is" in line]
    assert revealed == [
        'user_app.py:7: note: Revealed type is "clutchcall_api.models.call_status.CallStatus"',
        'user_app.py:13: note: Revealed type is "clutchcall_api.models.call_status.CallStatus"',
        'user_app.py:15: note: Revealed type is "clutchcall._control._async_client.AsyncCall"',
    ], out
    assert 'user_app.py:19: error: "type[CallStatus]" has no attribute "NOT_A_MEMBER"' in out
    assert "Found 1 error in 1 file" in out, out


def test_without_the_marker_the_type_check_would_see_any(
    installed: Installed, tmp_path: Path
) -> None:
    """The check above depends on the marker: without it, a user's mypy sees ``Any``."""
    marker = installed.site_packages / "clutchcall_api" / "py.typed"
    aside = marker.with_name("py.typed.aside")
    marker.rename(aside)
    try:
        out = mypy_on_user_script(installed, tmp_path)
    finally:
        aside.rename(marker)
    assert 'user_app.py:7: note: Revealed type is "Any"' in out, out
    assert "NOT_A_MEMBER" not in out


E2E_SCRIPT = """
import asyncio
import importlib.util
import json
import sys
import time

import httpx

import clutchcall
from clutchcall import AsyncVoice, CallStatus, Voice
from clutchcall.errors import MissingExtraError

info = json.loads(sys.argv[1])
options = dict(
    base_url=info["base_url"],
    api_key=info["api_key"],
    org_id=info["org_id"],
    verify=info["relay_ca_file"],
)
assert clutchcall.__file__.startswith(sys.argv[2]), clutchcall.__file__
ECHO = "+15005550004"


def answered(voice):
    call = voice.calls.originate(to=ECHO, from_="+15558675309", trunk_id="trunk_main")
    deadline = time.monotonic() + 20
    while voice.calls.get(call.sid).status is not CallStatus.IN_PROGRESS:
        assert time.monotonic() < deadline, "never answered"
        time.sleep(0.02)
    return call.refresh()


report = {}
with Voice(**options) as voice:
    call = answered(voice)
    heard = []
    bridge = voice.audio_bridge.attach(
        call.sid, on_uplink=lambda data, ts: heard.append(bytes(data))
    )
    # The echo callee joins the media once the bridge has: publish until 20 frames
    # have come back (each one sent, once, on downlink and echoed on uplink).
    sent = []
    deadline = time.monotonic() + 20
    while len(set(heard) & set(sent)) < 20:
        assert time.monotonic() < deadline, f"echoed: {len(set(heard) & set(sent))}"
        sent.append(b"fresh-venv-%05d" % len(sent))
        bridge.publish_downlink(sent[-1], timestamp_us=len(sent) * 20_000)
        time.sleep(0.02)
    assert set(heard) <= set(sent) | {f for f in heard if not f.startswith(b"fresh-venv-")}
    report["bridge_frames_out"] = bridge.stats.frames_out
    bridge.close()
    media = httpx.get(f"{info['base_url']}/_dev/calls/{call.sid}/media").json()
    report["callee_downlink_frames"] = media["downlink"]["frames"]
    call.transfer(to="+15557654321")
    assert voice.calls.get(call.sid).to == "+15557654321"
    call.hangup()
    assert voice.calls.get(call.sid).status is CallStatus.COMPLETED
    report["sync"] = "ok"


async def async_calls():
    async with AsyncVoice(**options) as voice:
        call = await voice.calls.originate(to=ECHO, from_="+15558675309", trunk_id="t")
        while (await call.refresh()).status is not CallStatus.IN_PROGRESS:
            await asyncio.sleep(0.02)
        got = asyncio.Event()

        def on_uplink(data, ts):
            if bytes(data) == b"async-frame":
                got.set()

        bridge = await voice.audio_bridge.attach(call.sid, on_uplink=on_uplink)
        for _ in range(100):
            await bridge.publish_downlink(b"async-frame")
            try:
                await asyncio.wait_for(got.wait(), 0.1)
                break
            except asyncio.TimeoutError:
                pass
        assert got.is_set(), "no echo on the async bridge"
        await bridge.aclose()
        await call.hangup()
        return "ok"


report["async"] = asyncio.run(async_calls())

for module, extra in (("clutchcall.audio", "audio"), ("clutchcall.dev", "dev")):
    try:
        __import__(module)
    except MissingExtraError as exc:
        assert f"pip install 'clutchcall[{extra}]'" in str(exc), str(exc)
        report[module] = extra
report["imported_extras"] = sorted(
    m for m in ("av", "numpy", "starlette", "uvicorn", "trio") if m in sys.modules
)
report["installed_extras"] = sorted(
    m for m in ("av", "numpy", "starlette", "uvicorn") if importlib.util.find_spec(m)
)
print(json.dumps(report))
"""


@pytest.fixture
def dev_engine() -> Iterator[dict[str, str]]:
    """``clutchcall dev`` from the project's own environment, on free ports."""
    command = ["clutchcall", "dev", "--port", "0", "--relay-port", "0", "--time-scale", "0.05"]
    proc = subprocess.Popen(
        [sys.executable, "-m", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info: dict[str, str] = json.loads(proc.stdout.readline())
        yield info
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err


def test_the_base_install_runs_whole_calls_and_audio_bridges(
    installed: Installed, dev_engine: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "whole_call.py"
    script.write_text(E2E_SCRIPT)
    done = run(
        [installed.python, script, json.dumps(dev_engine), installed.site_packages],
        cwd=tmp_path,
        env=user_env(),
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["sync"] == report["async"] == "ok"
    assert report["bridge_frames_out"] >= 20 and report["callee_downlink_frames"] >= 20
    assert report["clutchcall.audio"] == "audio" and report["clutchcall.dev"] == "dev"
    assert report["imported_extras"] == report["installed_extras"] == []


def test_the_installed_command_line(installed: Installed, tmp_path: Path) -> None:
    command = installed.bin / "clutchcall"
    version = checked([command, "--version"], cwd=tmp_path, env=user_env())
    assert version.stdout.strip() == f"clutchcall {installed.wheel.name.split('-')[1]}"
    bare = checked([command], cwd=tmp_path, env=user_env())
    assert bare.stdout.startswith("usage: clutchcall")
    dev = run([command, "dev", "--port", "0"], cwd=tmp_path, env=user_env(), timeout=60)
    assert dev.returncode == 1 and dev.stdout == ""
    assert "pip install 'clutchcall[dev]'" in dev.stderr and "Traceback" not in dev.stderr
