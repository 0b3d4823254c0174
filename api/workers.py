"""``datatrust serve --workers N``: one app per worker process, all on the same trust.

uvicorn starts the worker processes and shares the listening socket between them; each
calls :func:`worker_app`, which opens the trust named by ``DATATRUST_WORKER_DATA_DIR``.
Every process has its own ledger writer, append process (``ledger.remote``), check index and
caches. What keeps them one trust:

* appends from every process go to one chain: each group commit takes the database's write
  lock (PostgreSQL advisory lock; on SQLite a file lock the writers queue on, then
  ``BEGIN IMMEDIATE``) and re-reads the head;
* each check index follows the ledger (``trust.checks``: a withdrawal recorded by one
  worker binds checks in the others within one poll, 0.2 s);
* a partner's suspension binds at once in the worker that recorded it and within 1 s in the
  others (``api.auth.standing``);
* the governance closer and the webhook worker run in every process and never record a
  decision or send a delivery twice (both re-check inside the writer's transaction).

``/metrics`` answers from the process that took the request: scrape a single-worker server
when you need exact counters.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from api.app import create_app
from api.instance import Instance
from api.logs import configure_logging
from api.serving_gc import prepare_gc_for_serving

DATA_DIR_ENV = "DATATRUST_WORKER_DATA_DIR"


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn calls this factory in each process it starts)."""
    data_dir = os.environ.get(DATA_DIR_ENV)
    if not data_dir:
        msg = f"{DATA_DIR_ENV} is not set: start workers with `datatrust serve --workers N`"
        raise RuntimeError(msg)
    configure_logging()
    app = create_app(Instance.open(Path(data_dir)), close_on_shutdown=True, background=True, append_process=True)
    prepare_gc_for_serving()
    return app
