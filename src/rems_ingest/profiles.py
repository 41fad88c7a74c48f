"""Load versioned rules profiles from ``config/rules/<name>.toml`` (the I/O half of core.policy)."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

import structlog

from rems_ingest.core.errors import PolicyError
from rems_ingest.core.policy import RulesPolicy

log = structlog.get_logger("rems_ingest.profiles")

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


class PolicyHolder:
    """The rules profile in force; swapped atomically on reload."""

    def __init__(self, name: str, dispense_profile: str | None) -> None:
        self.name, self.dispense_profile = name, dispense_profile
        self.current: RulesPolicy = load(name, dispense_profile)

    def __call__(self) -> RulesPolicy:
        return self.current

    def reload(self) -> str:
        """Load the profile again; on a bad edit keep the one in force and raise the reason."""
        try:
            self.current = load(self.name, self.dispense_profile)
        except Exception as exc:
            log.error("rules_profile_reload_failed", error=str(exc), kept=self.current.label)
            raise
        log.info("rules_profile_reloaded", profile=self.current.label)
        return self.current.label

    def reload_quietly(self) -> None:
        """SIGHUP handler: the failure is logged, the daemon keeps running on the old profile."""
        try:
            self.reload()
        except Exception:  # noqa: BLE001 - already logged
            pass
