"""Running a coroutine to completion from a synchronous test, whatever the main thread holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_on_new_loop(
    coro: Coroutine[Any, Any, T], factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
) -> T:
    """Run *coro* as ``asyncio.run`` does (pending tasks cancelled, then the loop closed), on a thread of its own.

    A thread of its own, as a server's loop is: in a test process the main thread may already have a
    loop marked running (Playwright's sync API, which the browser tests use, keeps one for the session),
    and ``asyncio.run`` refuses to start beside it.
    """

    def run() -> T:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-event-loop") as pool:
        return pool.submit(run).result()
