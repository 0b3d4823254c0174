"""``datatrust governance …``: export the configuration as a template, close due votes.

``datatrust init --template FILE`` (in :mod:`api.cli`) starts a new trust from an exported
template via :func:`read_template`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from api.instance import Instance
from ledger.errors import DomainError
from trust.config import GovernanceConfig, export_template, load_template
from trust.requests import close_due_requests

governance_app = typer.Typer(help="Governance: the configuration and access-request votes.", no_args_is_help=True)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])
DataDir = Annotated[
    Path,
    typer.Option("--data-dir", envvar="DATATRUST_DATA_DIR", help="The trust's data directory.", file_okay=False),
]
DEFAULT_DATA_DIR = Path("datatrust-data")


def clean_errors(func: F) -> F:
    """One-line message and exit status 2 for domain and file errors (as in ``api.cli``)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DomainError as exc:
            err.print(f"error: {exc.detail}", highlight=False)
            raise typer.Exit(2) from None
        except (OSError, ValueError) as exc:
            err.print(f"error: {exc}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def opened(data_dir: Path) -> Iterator[Instance]:
    """Open the trust in *data_dir* and close it afterwards."""
    instance = Instance.open(data_dir)
    try:
        yield instance
    finally:
        instance.close()


def read_template(template: Path | None, mission: str, *, default_mission: str) -> tuple[GovernanceConfig | None, str]:
    """The configuration in *template* (None without one) and the mission to use.

    The template's mission is used unless the caller gave a mission of their own.
    """
    if template is None:
        return None, mission
    config, provenance = load_template(template)
    template_mission = provenance.get("mission")
    if mission == default_mission and isinstance(template_mission, str) and template_mission.strip():
        mission = template_mission
    return config, mission


@governance_app.command("export-config")
@clean_errors
def export_config(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file instead of standard output.", dir_okay=False),
    ] = None,
) -> None:
    """Print the governance configuration in force as a TOML template (`datatrust init --template` reads it)."""
    with opened(data_dir) as instance, instance.db.engine.connect() as conn:
        text = export_template(conn, source=instance.name)
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text)
    out.print(f"Wrote the governance template to {output}")


@governance_app.command("close-due")
@clean_errors
def close_due(data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Record the decision of every access request whose vote is settled or whose voting period has ended."""
    with opened(data_dir) as instance, instance.db.engine.connect() as conn:
        decided = close_due_requests(instance.ledger, conn, now=instance.clock())
    for entry in decided:
        out.print(
            f"{entry.payload['request']}: {entry.payload['outcome']} ({entry.payload['reason']}, entry {entry.seq})"
        )
    out.print(f"Recorded {len(decided)} decision(s).")


def register(app: typer.Typer) -> None:
    """Add the ``governance`` commands to the ``datatrust`` app."""
    app.add_typer(governance_app, name="governance")
