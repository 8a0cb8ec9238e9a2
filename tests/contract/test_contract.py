"""Contract tests: schemathesis drives the dev engine from openapi.yaml.

All four phases run (examples, coverage, fuzzing, stateful via the spec's links) with
schemathesis' default checks, against a real engine over a real socket. The run is
seeded so a failure reproduces; its summary lands in the test output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from clutchcall.dev import Engine

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = int(os.environ.get("CLUTCHCALL_CONTRACT_EXAMPLES", "30"))


def run_schemathesis(
    engine: Engine, *extra: str, max_examples: int = MAX_EXAMPLES, seed: int = 20261125
) -> tuple[int, str]:
    cmd = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        str(ROOT / "openapi.yaml"),
        "--url",
        engine.base_url,
        "--header",
        f"Authorization: Bearer {engine.api_key}",
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--no-color",
        "--workers",
        "1",
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_engine_conforms_to_openapi_yaml(clutchcall_engine: Engine) -> None:
    code, output = run_schemathesis(clutchcall_engine)
    summary = re.search(r"(\d+) generated, (.*)", output)
    print(summary.group(0) if summary else output[-2000:])
    assert code == 0, output[-6000:]
    assert summary is not None
    generated = int(summary.group(1))
    assert summary.group(2).startswith(f"{generated} passed"), summary.group(0)
    assert generated >= 300
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅ {phase}", output), f"phase {phase} did not pass:\n{output[-3000:]}"


def test_stateful_sequences_of_a_thousand_cases(clutchcall_engine: Engine) -> None:
    """originate -> get / transfer / hangup / agent / bridge-token chains, via the links.

    Scenario lengths vary from run to run, so seeded runs repeat (at most six) until
    1,000 stateful cases have passed; every run must pass.
    """
    total = 0
    for seed in range(1, 7):
        code, output = run_schemathesis(
            clutchcall_engine, "--phases", "stateful", max_examples=300, seed=seed
        )
        summary = re.search(r"(\d+) generated, (.*)", output)
        assert code == 0, output[-6000:]
        assert summary is not None, output[-3000:]
        assert summary.group(2).startswith(f"{summary.group(1)} passed"), summary.group(0)
        total += int(summary.group(1))
        if total >= 1000:
            break
    print(f"{total} stateful cases passed")
    assert total >= 1000
