"""``datatrust governance …``: export the configuration as a template, close due votes.

``datatrust init --template FILE`` (in :mod:`api.cli`) starts a new trust from an exported
template via :func:`read_template`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli_common import DEFAULT_DATA_DIR, DataDir, clean_errors, opened, out
from trust.config import GovernanceConfig, export_template, load_template
from trust.requests import close_due_requests

governance_app = typer.Typer(help="Governance: the configuration and access-request votes.", no_args_is_help=True)


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
