"""``datatrust webhooks …``: run the delivery worker alone.

``datatrust serve`` runs a worker too; run this where deliveries should not share a
process with the API (or as well: workers in several processes never send the same
message at once). It stops on Ctrl-C or SIGTERM after finishing the batch in hand;
killed outright, it loses nothing: leased messages are sent again when the lease runs out.
"""

from __future__ import annotations

import signal
import threading
from datetime import timedelta
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from api.cli_common import DataDir, err, out
from api.instance import CONFIG_NAME
from api.webhooks.signing import webhook_signer
from api.webhooks.worker import BatchReport, DeliveryWorker
from ledger.db import Database
from ledger.errors import DomainError
from migrations import upgrade

webhooks_app = typer.Typer(help="Deliver webhooks to partners.", no_args_is_help=True)


def _report(report: BatchReport) -> None:
    out.print(
        f"sent {report.attempted}: {report.delivered} delivered, {report.retrying} to retry, {report.failed} given up",
        highlight=False,
    )


@webhooks_app.command("deliver")
def deliver(  # noqa: PLR0917 - typer: one parameter per option
    data_dir: DataDir = Path("datatrust-data"),
    once: Annotated[bool, typer.Option("--once", help="Send what is due now, then exit.")] = False,
    poll_interval: Annotated[float, typer.Option(help="Seconds between looks for due messages.", min=0.01)] = 1.0,
    batch_size: Annotated[int, typer.Option(help="Messages leased per pass.", min=1, max=1000)] = 50,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.", min=1, max=64)] = 8,
    timeout_seconds: Annotated[float, typer.Option(help="Per-request timeout.", min=0.1)] = 10.0,
    lease_seconds: Annotated[
        float, typer.Option(help="How long a leased message waits before another attempt may take it.", min=0.2)
    ] = 60.0,
) -> None:
    """Run the webhook delivery worker until stopped (Ctrl-C or SIGTERM)."""
    if not (data_dir / CONFIG_NAME).exists():
        err.print(f"error: {data_dir} is not a datatrust data directory (no {CONFIG_NAME})", highlight=False)
        raise typer.Exit(2)
    db = Database.for_data_dir(data_dir)
    try:
        upgrade(db.url)
        worker = DeliveryWorker(
            db,
            webhook_signer(data_dir),
            poll_interval=poll_interval,
            batch_size=batch_size,
            concurrency=concurrency,
            timeout=timeout_seconds,
            lease=timedelta(seconds=lease_seconds),
        )
    except (DomainError, ValueError, OSError) as exc:
        db.dispose()
        err.print(f"error: {exc}", highlight=False)
        raise typer.Exit(2) from None
    try:
        if once:
            while (report := worker.run_once()).attempted:
                _report(report)
            return
        stop = threading.Event()

        def _stop(_signum: int, _frame: FrameType | None) -> None:
            stop.set()
            worker.wake()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        out.print(f"Delivering webhooks from {data_dir} (Ctrl-C to stop)", highlight=False)
        worker.run(stop, on_batch=_report)
    finally:
        worker.close()
        db.dispose()
