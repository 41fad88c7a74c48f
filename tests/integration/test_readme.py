"""The README is exactly true (issue #19): its commands parse with the flags it shows, and its
samples are what the commands print. A README edit that drifts from the code fails here."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from rems_ingest.cli import cli
from tests.process import BIN, DaemonProcess

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _blocks(after: str) -> list[str]:
    """The fenced code blocks that follow ``after`` (the first two)."""
    rest = README[README.index(after):]
    return re.findall(r"```[a-z]*\n(.*?)```", rest, re.S)[:2]


def _command_lines() -> list[str]:
    """Every `rems-ingest ...` the README shows: in code blocks and in inline code."""
    inline = re.findall(r"`(?:\.venv/bin/)?rems-ingest ([^`]+)`", README)
    blocks = [m for block in re.findall(r"```[a-z]*\n(.*?)```", README, re.S) for m in re.findall(r"^\s*(?:\.venv/bin/)?rems-ingest ([^#\n]+)", block, re.M)]
    found = inline + blocks
    return sorted({c.strip() for c in found if "…" not in c and "|" not in c and not c.strip().startswith(("serve", "demo"))} | {"serve --help", "demo --help"})


@pytest.mark.parametrize("line", _command_lines())
def test_every_command_the_readme_shows_parses_with_its_flags(line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the paths it names are the repository's
    args = shlex.split(line)
    ctx = cli.make_context("rems-ingest", [], resilient_parsing=True)
    command: click.Command = cli
    while isinstance(command, click.Group) and args and not args[0].startswith("-"):
        sub = command.get_command(ctx, args[0])
        assert sub is not None, f"no command {args[0]!r} in: rems-ingest {line}"
        name, args = args[0], args[1:]
        if "--help" in args:
            return
        ctx = sub.make_context(name, list(args), parent=ctx) if not isinstance(sub, click.Group) or args else ctx
        command = sub
    # make_context parsed and validated every option and argument (unknown flag, missing value, bad type)


def test_the_readme_simulate_sample_is_the_real_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    command, sample = _blocks("## Check the rules by eye")
    args = shlex.split(command.strip().removeprefix(".venv/bin/rems-ingest "))
    out = CliRunner().invoke(cli, args)
    assert 0 == out.exit_code, out.output
    assert [line.rstrip() for line in sample.splitlines()] == [line.rstrip() for line in out.output.splitlines()]


def test_the_readme_demo_sample_matches_the_real_output() -> None:
    sample = _blocks("## See the whole product in one command")[1]
    out = CliRunner().invoke(cli, ["demo"], env={"REMS_AMQP__URL": ""})
    assert 0 == out.exit_code, out.output
    real = [" ".join(line.split()) for line in out.output.splitlines()]
    for line in sample.splitlines():
        pattern = ".*?".join(re.escape(" ".join(part.split())) for part in line.split("…"))
        assert any(re.fullmatch(pattern, r) for r in real), f"README demo line not in the output: {line}"


def test_the_worked_example_does_what_its_comments_say(tmp_path: Path) -> None:
    """The README's bash block, run as written (one script, as a terminal runs it) against a real
    daemon with the default settings, ports swapped for free ones: every `"key": value` and
    alert kind in a comment must be in that command's output."""
    block = _blocks("## A worked example")[0]
    env = {"REMS_STORE__URL": f"sqlite:///{tmp_path}/example.db"}
    d = DaemonProcess(tmp_path, env=env).start()
    try:
        steps: list[tuple[str, list[str]]] = []
        pending = ""
        for raw in block.splitlines():
            line = raw.strip()
            if line.startswith("#   ") and steps:
                steps[-1][1].append(line[4:])
            elif line and not line.startswith("#"):
                pending = f"{pending} {line}".strip()
                if pending.count("'") % 2 == 0:  # a command continued on the next line (an open quote)
                    steps.append((pending, []))
                    pending = ""
        marker = "@@step@@"
        script = "\n".join(f"printf '\\n{marker}\\n'\n{cmd}" for cmd, _ in steps)
        script = script.replace("localhost:8080", f"127.0.0.1:{d.http_port}").replace(".venv/bin/rems-ingest send", f"@BIN@ send --port {d.mllp_port}")
        script = script.replace(".venv/bin/rems-ingest", "@BIN@").replace("@BIN@", str(BIN))
        run = subprocess.run(["bash", "-c", script], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
        outputs = run.stdout.split(f"\n{marker}\n")[1:]
        assert len(outputs) == len(steps) and not run.stderr.strip(), run.stdout[-2000:] + run.stderr[-2000:]
        for (cmd, comments), text in zip(steps, outputs, strict=True):
            try:
                text = json.dumps(json.loads(text))  # one spacing to compare against
            except ValueError:
                pass
            for comment in comments:
                for pair in re.findall(r'"\w+": (?:"[^"]*"|true|false|-?\d+)', comment):
                    assert pair in text, f"{cmd}: README says {pair}; got {text[:600]}"
                for kind in re.findall(r"\b(?:pharmacy|alert|baseline|therapy|monitoring|lab)\.[a-z_]+\b", comment):
                    assert kind in text, f"{cmd}: README says {kind}; got {text[:600]}"
                for ack in re.findall(r"^(\S+\.hl7): (A[ARE])", comment):
                    assert f"{ack[0]}: {ack[1]}" in text, f"{cmd}: README says {ack}; got {text[:600]}"
    finally:
        d.stop()
