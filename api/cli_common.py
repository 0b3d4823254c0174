"""What every ``datatrust`` sub-command shares: consoles, the data-directory option, one-line errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from api.instance import Instance
from ledger.errors import DomainError, LedgerIntegrityError

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])

DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="DATATRUST_DATA_DIR", help="The trust's data directory.", file_okay=False),
]
DEFAULT_DATA_DIR = Path("datatrust-data")


def clean_errors(func: F) -> F:
    """Turn domain errors into a one-line message and a non-zero exit."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LedgerIntegrityError as exc:
            where = f" (first bad sequence number: {exc.seq})" if exc.seq is not None else ""
            err.print(f"[bold red]FAILED[/]: {exc.detail}{where}", highlight=False)
            raise typer.Exit(1) from None
        except DomainError as exc:
            err.print(f"error: {exc.detail}", highlight=False)
            raise typer.Exit(2) from None
        except (OSError, ValueError) as exc:
            err.print(f"error: {exc}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def opened(data_dir: Path) -> Iterator[Instance]:
    """Open the trust in *data_dir* and close it afterwards.

    Without the check engine's in-memory index: no command decides checks, and folding the
    whole ledger into it (and holding every consent) would only slow commands down.
    """
    instance = Instance.open(data_dir, check_index=False)
    try:
        yield instance
    finally:
        instance.close()


@contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar fed by ``(done, total)`` callbacks (on a terminal only: no stray lines in pipes)."""
    with Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total or None)

        yield update
