"""A server's append process: ``python -m api.append_process`` (see :mod:`ledger.remote`).

Started by the server it appends for (:func:`command`), with the trust named in its
environment; it opens the trust without a check index, appends what the server sends on
its standard input, answers on its standard output, and stops when its input ends,
signing a last checkpoint of what it appended. Ctrl-C at a terminal, or a service manager's
SIGTERM to the whole group, reaches it too: it ignores both and waits for the server to
close its input (as the server does when it stops, or the kernel when it dies), so that no
append is cut off.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from api.instance import Instance
from api.logs import configure_logging, flush_logs
from api.serving_gc import prepare_gc_for_serving
from ledger.db import DATABASE_URL_ENV
from ledger.remote import serve_appends

DATA_DIR_ENV = "DATATRUST_APPEND_DATA_DIR"
INTERVAL_ENV = "DATATRUST_APPEND_CHECKPOINT_INTERVAL"


def command(instance: Instance) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of an append process for *instance*."""
    env = {
        **os.environ,
        DATA_DIR_ENV: str(instance.data_dir.resolve()),
        DATABASE_URL_ENV: instance.db.url,
        INTERVAL_ENV: str(instance.ledger.checkpoint_interval),
    }
    return [sys.executable, "-m", "api.append_process"], env


def main() -> None:
    """Open the trust named in the environment and append for the server that started us."""
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, signal.SIG_IGN)  # the server closes our input when it stops
    # Answers go to the server on the standard output we were given; anything else that writes
    # to standard output (a library's print) goes to standard error instead, never into a frame.
    answers = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    configure_logging()
    instance = Instance.open(
        Path(os.environ[DATA_DIR_ENV]),
        database_url=os.environ[DATABASE_URL_ENV],
        checkpoint_interval=float(os.environ[INTERVAL_ENV]),
        check_index=False,
    )
    prepare_gc_for_serving()  # a full collection here would stall every check waiting on a commit
    try:
        serve_appends(instance.ledger.append_nowait, sys.stdin.buffer, answers)
    finally:
        instance.close()
        flush_logs()


if __name__ == "__main__":
    main()
