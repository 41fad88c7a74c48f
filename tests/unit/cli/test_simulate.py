"""``rems-ingest simulate``: the clinician's way to check the rules by eye, over the example files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rems_ingest.cli import cli

EXAMPLES = Path(__file__).resolve().parents[3] / "fixtures" / "simulate"


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.stdout, r.stderr


def timeline(*args: str) -> list[dict]:  # type: ignore[type-arg]
    code, out, err = run("simulate", "--json", *args)
    assert 0 == code, err
    return [json.loads(line) for line in out.splitlines()]


def test_seed_walk_through_general_population_interrupts_at_900_and_is_an_emergency_at_450() -> None:
    rows = timeline("--therapy-start", "2026-03-02", str(EXAMPLES / "seed_walkthrough_general.csv"))
    anc = [(r["input"], r["category"], r["action"], r["frequency"]) for r in rows if r["input"].startswith("ANC")]
    assert [
        ("ANC 1800", "normal", "continue", "weekly"),
        ("ANC 1400", "mild", "continue_increased_monitoring", "three_times_weekly"),
        ("ANC 900", "moderate", "interrupt", "daily"),
        ("ANC 450", "severe", "emergency", "daily"),
    ] == anc
    assert "pharmacy.hold" in rows[-2]["alerts"]


def test_seed_walk_through_ben_continues_at_900() -> None:
    rows = timeline("--population", "ben", "--baseline-anc", "1100", "--therapy-start", "2026-03-02", str(EXAMPLES / "seed_walkthrough_ben.csv"))
    at_900 = next(r for r in rows if r["input"] == "ANC 900")
    assert ("ben_neutropenia", "continue_increased_monitoring", "active") == (at_900["category"], at_900["action"], at_900["treatment"])


def test_moderate_episode_ignores_the_preliminary_and_resumes_at_1000() -> None:
    rows = timeline("--therapy-start", "2026-01-05", str(EXAMPLES / "moderate_episode_recovery.csv"))
    prelim = next(r for r in rows if "(P, ignored)" in r["input"])
    assert ("active", []) == (prelim["treatment"], prelim["alerts"])
    resumed = next(r for r in rows if r["input"] == "ANC 1050")
    assert "therapy.resume_eligible" in resumed["alerts"] and "pharmacy.release" in resumed["alerts"]
    assert "monitoring.restored" in rows[-2]["alerts"]


def test_severe_recovery_waits_for_a_rechallenge_decision() -> None:
    rows = timeline("--therapy-start", "2026-01-05", str(EXAMPLES / "severe_then_rechallenge.csv"))
    recovered = next(r for r in rows if r["input"] == "ANC 1600")
    assert ("decision_required", "on_hold_decision", ["therapy.decision_required"]) == (recovered["action"], recovered["treatment"], recovered["alerts"])
    rechallenge = next(r for r in rows if r["input"] == "rechallenge")
    assert "active" == rechallenge["treatment"]


def test_the_table_shows_profile_and_every_decision() -> None:
    code, out, _ = run("simulate", "--therapy-start", "2026-03-02", str(EXAMPLES / "seed_walkthrough_general.csv"))
    assert 0 == code
    assert out.startswith("profile us-label@")
    assert "therapy.emergency" in out.splitlines()[-1]


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        ("2026-03-02,1800\n2026-03-01,1500\n", [], "before the previous line"),
        ("2026-03-02,-5\n", [], "negative"),
        ("2026-03-02,lots\n", [], "neither an ANC value nor a known event"),
        ("03/02/2026,1800\n", [], "is not a date"),
        ("2026-03-02,1800\n", ["--profile", "nope"], "nope"),
        ("2026-03-02,1800\n", ["--population", "martian"], "martian"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path: Path, content: str, args: list[str], message: str) -> None:
    f = tmp_path / "in.csv"
    f.write_text(content)
    code, out, err = run("simulate", "--therapy-start", "2026-03-02", *args, str(f))
    assert 2 == code, out
    assert message in err
    assert "Traceback" not in err + out


def test_uk_profile_colours_use_the_wbc_column() -> None:
    rows = timeline("--profile", "uk-cpms", "--therapy-start", "2026-01-05", str(EXAMPLES / "uk_amber_then_red.csv"))
    colours = [r["category"] for r in rows if r["input"].startswith("ANC")]
    assert ["green", "green", "amber", "amber", "green", "red", "red", "amber", "green"] == colours  # 2100 with WBC 3400 is amber
    assert "therapy.emergency" in rows[-3]["alerts"]  # neutrophils 900 < 1000
    assert ("decision_required", "on_hold_decision") == (rows[-1]["action"], rows[-1]["treatment"])
