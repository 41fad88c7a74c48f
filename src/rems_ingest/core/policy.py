"""Versioned rules profiles: thresholds, intervals and [D] choices as data.

The logic lives in ``rules.py``; the numbers live in ``config/rules/*.toml`` and are turned
into a frozen ``RulesPolicy`` here (pure: takes a mapping, never reads files).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from rems_ingest.core.errors import PolicyError
from rems_ingest.core.model import Frequency

DISPENSE_PROFILES = ("INSTITUTIONAL_STRICT", "US_REMS_LEGACY", "US_2025_NONE")
SCHEMES = ("us-label", "uk-traffic-light")


@dataclass(frozen=True, slots=True)
class RulesPolicy:
    name: str
    version: str
    # general population thresholds (cells/uL, half-open: lower <= anc < upper)
    gp_normal: Decimal
    gp_mild: Decimal
    gp_moderate: Decimal
    # BEN thresholds
    ben_normal: Decimal
    ben_severe: Decimal
    # cadence
    stepdown_months_q2w: int
    stepdown_months_monthly: int
    days_weekly: int
    days_every_2_weeks: int
    days_monthly: int
    days_three_weekly: int
    days_daily: int
    days_confirm_repeat: int
    post_episode_weeks: int
    three_weekly_overdue_tolerance_days: int
    interruption_new_patient_days: int
    retitration_after_days: int
    baseline_window_days: int
    fever_threshold_c: Decimal
    fever_after_discontinuation_days: int
    # pharmacy
    dispense_profile: str
    window_weekly: int
    window_every_2_weeks: int
    window_monthly: int
    supply_weekly: int
    supply_every_2_weeks: int
    supply_monthly: int
    # the rule family the logic follows; thresholds above are ANC-only for "us-label"
    scheme: str = "us-label"
    # UK traffic light (rules.md 6.1), cells/uL; red/amber lower bounds are exclusive of green
    uk_green_wbc: Decimal = Decimal(0)
    uk_green_neut: Decimal = Decimal(0)
    uk_red_wbc: Decimal = Decimal(0)
    uk_red_neut: Decimal = Decimal(0)
    uk_haematology_wbc: Decimal = Decimal(0)
    uk_haematology_neut: Decimal = Decimal(0)
    days_twice_weekly: int = 3
    stepdown_weeks_q2w: int = 0  # UK: weeks on therapy before fortnightly / four-weekly may be offered
    stepdown_weeks_monthly: int = 0

    @property
    def uk(self) -> bool:
        return self.scheme == "uk-traffic-light"

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def interval_days(self, freq: Frequency) -> int:
        return {
            Frequency.DAILY: self.days_daily,
            Frequency.THREE_WEEKLY: self.days_three_weekly,
            Frequency.TWICE_WEEKLY: self.days_twice_weekly,
            Frequency.WEEKLY: self.days_weekly,
            Frequency.EVERY_2_WEEKS: self.days_every_2_weeks,
            Frequency.MONTHLY: self.days_monthly,
        }[freq]

    def currency_window(self, freq: Frequency) -> int:
        if freq is Frequency.MONTHLY:
            return self.window_monthly
        if freq is Frequency.EVERY_2_WEEKS:
            return self.window_every_2_weeks
        return self.window_weekly

    def max_supply(self, freq: Frequency) -> int:
        if freq is Frequency.MONTHLY:
            return self.supply_monthly
        if freq is Frequency.EVERY_2_WEEKS:
            return self.supply_every_2_weeks
        return self.supply_weekly

    def with_dispense_profile(self, profile: str) -> RulesPolicy:
        if profile not in DISPENSE_PROFILES:
            raise PolicyError(f"unknown dispense profile {profile!r}; use one of {', '.join(DISPENSE_PROFILES)}")
        from dataclasses import replace

        return replace(self, dispense_profile=profile)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RulesPolicy:
        """Build from a parsed TOML profile; every key is required so a typo fails loudly."""
        try:
            prof = data["profile"]
            scheme = str(prof.get("scheme", "us-label"))
            if scheme not in SCHEMES:
                raise PolicyError(f"unknown rules scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
            cad, ph = data["cadence"], data["pharmacy"]
            uk: dict[str, Any] = {}
            if scheme == "uk-traffic-light":
                t = data["thresholds"]["uk"]
                uk = dict(
                    uk_green_wbc=Decimal(str(t["green_wbc"])),
                    uk_green_neut=Decimal(str(t["green_neutrophils"])),
                    uk_red_wbc=Decimal(str(t["red_below_wbc"])),
                    uk_red_neut=Decimal(str(t["red_below_neutrophils"])),
                    uk_haematology_wbc=Decimal(str(t["haematology_below_wbc"])),
                    uk_haematology_neut=Decimal(str(t["haematology_below_neutrophils"])),
                    days_twice_weekly=int(cad["days_twice_weekly"]),
                    stepdown_weeks_q2w=int(cad["stepdown_weeks_fortnightly"]),
                    stepdown_weeks_monthly=int(cad["stepdown_weeks_four_weekly"]),
                )
                # baseline, discontinuation and fever rules read the neutrophil limits through these
                gp = {"normal": t["green_neutrophils"], "mild": t["red_below_neutrophils"], "moderate": t["haematology_below_neutrophils"]}
                ben = {"normal": t["green_neutrophils"], "severe": t["red_below_neutrophils"]}  # BEN is refused at enrollment
                cad = {**cad, "stepdown_months_every_2_weeks": 0, "stepdown_months_monthly": 0, "post_episode_weeks": 0}
            else:
                gp, ben = data["thresholds"]["general"], data["thresholds"]["ben"]
            policy = cls(
                scheme=scheme,
                **uk,
                name=str(prof["name"]),
                version=str(prof["version"]),
                gp_normal=Decimal(str(gp["normal"])),
                gp_mild=Decimal(str(gp["mild"])),
                gp_moderate=Decimal(str(gp["moderate"])),
                ben_normal=Decimal(str(ben["normal"])),
                ben_severe=Decimal(str(ben["severe"])),
                stepdown_months_q2w=int(cad["stepdown_months_every_2_weeks"]),
                stepdown_months_monthly=int(cad["stepdown_months_monthly"]),
                days_weekly=int(cad["days_weekly"]),
                days_every_2_weeks=int(cad["days_every_2_weeks"]),
                days_monthly=int(cad["days_monthly"]),
                days_three_weekly=int(cad["days_three_weekly"]),
                days_daily=int(cad["days_daily"]),
                days_confirm_repeat=int(cad["days_confirm_repeat"]),
                post_episode_weeks=int(cad["post_episode_weeks"]),
                three_weekly_overdue_tolerance_days=int(cad["three_weekly_overdue_tolerance_days"]),
                interruption_new_patient_days=int(cad["interruption_new_patient_days"]),
                retitration_after_days=int(cad["retitration_after_days"]),
                baseline_window_days=int(cad["baseline_window_days"]),
                fever_threshold_c=Decimal(str(cad["fever_threshold_c"])),
                fever_after_discontinuation_days=int(cad["fever_after_discontinuation_days"]),
                dispense_profile=str(ph["profile"]),
                window_weekly=int(ph["window_days"]["weekly"]),
                window_every_2_weeks=int(ph["window_days"]["every_2_weeks"]),
                window_monthly=int(ph["window_days"]["monthly"]),
                supply_weekly=int(ph["max_supply_days"]["weekly"]),
                supply_every_2_weeks=int(ph["max_supply_days"]["every_2_weeks"]),
                supply_monthly=int(ph["max_supply_days"]["monthly"]),
            )
        except KeyError as exc:
            raise PolicyError(f"rules profile is missing setting {exc.args[0]!r}") from None
        except (ValueError, ArithmeticError, TypeError) as exc:
            raise PolicyError(f"rules profile has an invalid value: {exc}") from None
        if policy.uk and not (policy.uk_green_wbc > policy.uk_red_wbc > policy.uk_haematology_wbc > 0 and policy.uk_green_neut > policy.uk_red_neut > policy.uk_haematology_neut > 0):
            raise PolicyError("UK thresholds must satisfy green > red > haematology > 0 for WBC and neutrophils")
        if not (policy.gp_normal > policy.gp_mild > policy.gp_moderate > 0):
            raise PolicyError("general thresholds must satisfy normal > mild > moderate > 0")
        if not (policy.ben_normal > policy.ben_severe > 0):
            raise PolicyError("BEN thresholds must satisfy normal > severe > 0")
        if policy.dispense_profile not in DISPENSE_PROFILES:
            raise PolicyError(f"unknown dispense profile {policy.dispense_profile!r}")
        return policy
