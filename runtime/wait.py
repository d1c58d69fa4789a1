"""`python -m runtime.wait --store URL --hash HASH [--timeout S]`: return once a run's entry is built.

A child run's pods on a cluster start with this as their init container, so
a child submitted together with its parent trains only after the parent's
entry is published (its completion marker exists). Bounded: after --timeout
seconds it gives up with one line (exit 1), the pod fails, and the JobSet's
failure policy decides what happens next.

Exit codes: 0 built, 1 gave up waiting, 2 bad input (store or hash).
"""

from __future__ import annotations

import argparse
import sys
import time

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_TIMEOUT_S = 24 * 3600.0  # a parent of thousands of chip-hours may take a day
DEFAULT_POLL_S = 30.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runtime.wait", description="Wait until a run is built in the store.")
    parser.add_argument("--store", required=True, help="store URL (fsspec)")
    parser.add_argument("--hash", required=True, dest="run_hash", help="the run (a parent) to wait for")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds before giving up")
    parser.add_argument("--poll", type=float, default=DEFAULT_POLL_S, help="seconds between two looks at the store")
    return parser.parse_args(argv)


def wait(store_url: str, run_hash: str, timeout: float, poll: float) -> int:
    from compiler.store import StoreError, open_store

    try:
        store = open_store(store_url)
        deadline = time.monotonic() + timeout
        while not store.is_built(run_hash):
            if time.monotonic() >= deadline:
                print(f"runix wait: {run_hash[:12]} is still not built in {store_url} after {timeout:.0f} s; giving up",
                      file=sys.stderr)
                return EXIT_FAILED
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
    except StoreError as err:
        print(f"runix wait: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"runix wait: {run_hash[:12]} is built", flush=True)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return wait(args.store, args.run_hash, args.timeout, args.poll)


if __name__ == "__main__":
    sys.exit(main())
