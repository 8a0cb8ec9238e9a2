"""Command line: ``clutchcall dev`` runs the local dev engine.

The dev engine is imported only when asked for: ``clutchcall --version`` and
``clutchcall --help`` work with the base install, and ``clutchcall dev`` without
the ``dev`` extra says how to get it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from . import __version__
from .errors import MissingExtraError

#: ``clutchcall dev``'s defaults (the same as ``clutchcall.dev.Engine``'s, which
#: the base install cannot import).
DEFAULT_API_KEY = "cc_dev_local_key"
DEFAULT_ORG_ID = "org_dev"

FAILURE_POLL_SECONDS = 0.2
"""How often ``clutchcall dev`` checks that every part of the engine still runs."""


def _dev(args: argparse.Namespace) -> int:
    try:
        from .dev import Engine, EngineError
    except MissingExtraError as exc:
        print(f"clutchcall dev: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    engine = Engine(
        host=args.host,
        port=args.port,
        time_scale=args.time_scale,
        api_key=args.api_key,
        org_id=args.org_id,
        relay_port=args.relay_port,
        cert_dir=args.cert_dir,
    )
    try:
        engine.start()
    except EngineError as exc:
        print(f"clutchcall dev: {exc}", file=sys.stderr)
        return 1
    try:
        print(json.dumps(engine.ready_info()), flush=True)
        # A part of the engine that dies (the relay's serving task, say) ends the
        # process: a dev engine that keeps minting tokens for a dead relay helps nobody.
        while not stop.wait(FAILURE_POLL_SECONDS):
            failure = engine.failure
            if failure is not None:
                print(f"clutchcall dev: the dev engine failed: {failure}; exiting", file=sys.stderr)
                return 1
    except EngineError as exc:
        print(f"clutchcall dev: {exc}; exiting", file=sys.stderr)
        return 1
    finally:
        engine.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clutchcall", description="ClutchCall SDK tools")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command")
    dev = commands.add_parser(
        "dev",
        help="run the local dev engine",
        description="Run the dev engine on localhost and print one JSON line "
        "(base_url, relay_url, api_key, org_id, relay_ca_file, softphone_url) once it is "
        "ready; open softphone_url in a browser to talk into calls. Stop it with Ctrl-C. "
        "If a part of the engine dies (its relay, say), it says why on stderr and exits "
        "with status 1.",
    )
    dev.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=8765, help="HTTP port, 0 for any (default 8765)")
    dev.add_argument(
        "--relay-port", type=int, default=0, help="UDP port of the MoQT relay (default 0: any)"
    )
    dev.add_argument(
        "--cert-dir",
        default=None,
        help="keep the relay's self-signed certificate in this directory and reuse it on "
        "the next start (default: a fresh one each time)",
    )
    dev.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply simulated ringing and answer delays (default 1.0)",
    )
    dev.add_argument("--api-key", default=DEFAULT_API_KEY, help="API key the engine accepts")
    dev.add_argument("--org-id", default=DEFAULT_ORG_ID, help="org of that API key")
    args = parser.parse_args(argv)
    if args.command is None:  # nothing asked: say what there is
        parser.print_help()
        return 0
    if args.time_scale <= 0:
        parser.error("--time-scale must be positive")
    return _dev(args)


if __name__ == "__main__":
    raise SystemExit(main())
