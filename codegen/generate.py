"""Regenerate (or check) everything in this repo that is derived from a source.

1. ``generated/clutchcall_api`` from ``openapi.yaml`` with openapi-python-client,
   configured by ``codegen/config.yaml``, plus its ``py.typed`` marker (PEP 561):
   the generator writes that marker only with its project metadata, which
   ``--meta none`` leaves out, and without it type checkers treat every model
   (``CallStatus``, ``Call.status``...) in a user's project as ``Any``.
2. The synchronous facade modules from their asynchronous originals, in the
   style of httpcore's unasync: each ``clutchcall/**/_async_*.py`` file has a
   ``_sync_*.py`` twin produced by token substitution, so sync and async logic
   live in one place.

``python codegen/generate.py`` rewrites the outputs; ``--check`` only compares
and exits 1, naming the stale files, if anything differs.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "openapi.yaml"
CONFIG = ROOT / "codegen" / "config.yaml"
GENERATED = ROOT / "generated" / "clutchcall_api"
PY_TYPED = "py.typed"
ASYNC_SOURCES = ROOT / "clutchcall"

# Whole-word substitutions turning async code into its blocking twin.
UNASYNC_WORDS: dict[str, str] = {
    "AsyncVoice": "Voice",
    "AsyncCall": "Call",
    "AsyncCalls": "Calls",
    "AsyncAgents": "Agents",
    "AsyncCallsWithRawResponse": "CallsWithRawResponse",
    "AsyncAgentsWithRawResponse": "AgentsWithRawResponse",
    "AsyncAudioBridges": "AudioBridges",
    "AsyncAudioBridge": "AudioBridge",
    "AsyncRetryTransport": "RetryTransport",
    "AsyncClient": "Client",
    "AsyncBaseTransport": "BaseTransport",
    "AsyncHTTPTransport": "HTTPTransport",
    "AsyncIterator": "Iterator",
    "AsyncGenerator": "Generator",
    "handle_async_request": "handle_request",
    "asyncio_detailed": "sync_detailed",
    "set_async_httpx_client": "set_httpx_client",
    "aclose": "close",
    "aread": "read",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "async_sleep": "sync_sleep",
    "async_deadline": "sync_deadline",
    "async_read_capped": "sync_read_capped",
    "async_http_transport": "sync_http_transport",
    "_async_": "_sync_",
}
UNASYNC_PHRASES: list[tuple[str, str]] = [
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
]
SYNC_HEADER = (
    "# Generated from {source} by codegen/generate.py.\n"
    "# Do not edit: change the async original and run `make generate`.\n"
)


def unasync_text(text: str, source_name: str) -> str:
    for pattern, replacement in UNASYNC_PHRASES:
        text = re.sub(pattern, replacement, text)
    words = "|".join(sorted((re.escape(w) for w in UNASYNC_WORDS), key=len, reverse=True))
    text = re.sub(rf"(?<![A-Za-z0-9]){words}", lambda m: UNASYNC_WORDS[m.group(0)], text)
    return ruff_format(SYNC_HEADER.format(source=source_name) + text)


def ruff_format(text: str) -> str:
    """Format generated Python the way the rest of the tree is formatted."""
    ruff = str(Path(sys.executable).parent / "ruff")
    for args in (
        ["check", "--fix-only", "--select", "I", "--quiet", "--stdin-filename", "generated.py"],
        ["format", "--stdin-filename", "generated.py"],
    ):
        text = subprocess.run(
            [ruff, *args, "-"], input=text, capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout
    return text


def unasync_targets() -> dict[Path, str]:
    """Map each sync twin path to the text it should have."""
    out: dict[Path, str] = {}
    for src in sorted(ASYNC_SOURCES.rglob("_async_*.py")):
        dst = src.with_name(src.name.replace("_async_", "_sync_", 1))
        rel = src.relative_to(ROOT).as_posix()
        out[dst] = unasync_text(src.read_text(encoding="utf-8"), rel)
    return out


def generate_client(dest: Path) -> None:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    cmd = [
        str(Path(sys.executable).parent / "openapi-python-client"),
        "generate",
        "--path",
        str(SPEC),
        "--config",
        str(CONFIG),
        "--meta",
        "none",
        "--output-path",
        str(dest),
        "--overwrite",
        "--fail-on-warning",
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"openapi-python-client failed with exit code {result.returncode}")
    # The package is typed: say so to type checkers (PEP 561), as --meta none does not.
    (dest / PY_TYPED).write_text("", encoding="utf-8")


def tree_differences(left: Path, right: Path) -> list[str]:
    """Relative paths that differ between two directory trees (ignoring caches)."""

    def files(root: Path) -> set[str]:
        return {
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }

    a, b = files(left), files(right)
    diff = sorted(a ^ b)
    for name in sorted(a & b):
        if not filecmp.cmp(left / name, right / name, shallow=False):
            diff.append(name)
    return diff


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale outputs")
    args = parser.parse_args()

    stale: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "clutchcall_api"
        generate_client(fresh)
        if args.check:
            stale += [f"generated/clutchcall_api/{n}" for n in tree_differences(fresh, GENERATED)]
        else:
            shutil.rmtree(GENERATED, ignore_errors=True)
            shutil.copytree(fresh, GENERATED, ignore=shutil.ignore_patterns("__pycache__"))

    for path, text in unasync_targets().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.relative_to(ROOT).as_posix())
        else:
            path.write_text(text, encoding="utf-8")

    if stale:
        print("stale generated files (run `make generate`):", file=sys.stderr)
        for name in stale:
            print(f"  {name}", file=sys.stderr)
        return 1
    print("generated code is up to date" if args.check else "generated code written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
