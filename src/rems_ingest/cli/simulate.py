"""``simulate``: the decision timeline of a script (service/simulate.py), as a table or JSON."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import click

from rems_ingest import profiles
from rems_ingest.cli._common import cli
from rems_ingest.core.errors import CoreError
from rems_ingest.core.model import Frequency, Population
from rems_ingest.core.policy import DISPENSE_PROFILES
from rems_ingest.service import simulate as simulation


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--profile", default="us-label", show_default=True)
@click.option("--population", type=click.Choice(["general", "ben"]), default="general", show_default=True)
@click.option("--therapy-start", required=True, type=click.DateTime(["%Y-%m-%d"]))
@click.option("--baseline-anc", type=float, help="BEN established baseline.")
@click.option("--monitoring-frequency", type=click.Choice(["weekly", "every_2_weeks", "monthly"]), help="A patient moved from a clinic on this routine interval.")
@click.option("--dispense-profile", type=click.Choice(DISPENSE_PROFILES))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per decision.")
def simulate(file: Path, profile: str, population: str, therapy_start: datetime, baseline_anc: float | None, monitoring_frequency: str | None, dispense_profile: str | None, as_json: bool) -> None:
    """Print the decision timeline for FILE (lines: date,anc[,status[,wbc[,specimen]]] or
    date,event[,args]; counts in cells/uL). Lines apply in file order, as the daemon applies
    messages in arrival order: a line naming its specimen may be dated earlier (a late or
    corrected result) and re-folds the history. ``date,discontinue,planned`` is a planned stop.
    WBC matters only to profiles that use it (uk-cpms)."""
    try:
        policy = profiles.load(profile, dispense_profile)
    except CoreError as exc:
        raise click.UsageError(str(exc)) from None
    patient = simulation.Patient(
        Population(population),
        therapy_start.date(),
        Decimal(str(baseline_anc)) if baseline_anc else None,
        Frequency(monitoring_frequency) if monitoring_frequency else None,
    )
    try:
        with open(file, newline="") as fh:
            rows = simulation.run(policy, simulation.read_script(csv.reader(fh), patient))
    except simulation.ScriptError as exc:
        raise click.UsageError(f"{file}:{exc.line}: {exc.reason}") from None
    except UnicodeDecodeError as exc:
        raise click.UsageError(f"{file} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save it as UTF-8 CSV") from None
    if as_json:
        for r in rows:
            click.echo(json.dumps(r))
        return
    for line in simulation.table(policy, population, rows):
        click.echo(line)
