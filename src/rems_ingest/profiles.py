"""Load versioned rules profiles from ``config/rules/<name>.toml`` (the I/O half of core.policy)."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

from rems_ingest.core.errors import PolicyError
from rems_ingest.core.policy import RulesPolicy

_REPO_RULES = Path(__file__).resolve().parents[2] / "config" / "rules"


def rules_dirs() -> list[Path]:
    dirs = []
    if env := os.environ.get("REMS_RULES_DIR"):
        dirs.append(Path(env))
    dirs += [Path.cwd() / "config" / "rules", _REPO_RULES, Path(sys.prefix) / "share" / "rems-ingest" / "rules"]
    return dirs


def available() -> list[str]:
    names = {p.stem for d in rules_dirs() if d.is_dir() for p in d.glob("*.toml")}
    return sorted(names)


def load(name: str, dispense_profile: str | None = None) -> RulesPolicy:
    """Load a profile by name (``us-label``) or by path to a TOML file."""
    candidates = [Path(name)] if name.endswith(".toml") else [d / f"{name}.toml" for d in rules_dirs()]
    for path in candidates:
        if path.is_file():
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise PolicyError(f"rules profile {path} is not valid TOML: {exc}") from None
            policy = RulesPolicy.from_mapping(data)
            return policy.with_dispense_profile(dispense_profile) if dispense_profile else policy
    raise PolicyError(f"unknown rules profile {name!r}; available: {', '.join(available()) or 'none'}")
