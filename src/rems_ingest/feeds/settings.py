"""``[feeds.NAME]`` settings: a lab feed's registration, as the site writes it (issue #25).

    [feeds.main-lab]
    networks = ["10.20.30.0/24"]              # and/or certificate_names = ["lis.hospital.example"]
    facilities = ["GHH_LAB"]                  # MSH-4 it may send ("*": any)
    authorities = ["HOSP"]                    # PID-3 assigning authorities it reports for
    local_codes = { "NEUTA" = "anc" }
    units = { "NEUT" = "10*9/L" }             # the unit of a local code sent without one
    lab_hours = "07:00-19:00"                 # silent after 60 min inside, 480 outside
"""

from __future__ import annotations

import ipaddress
from datetime import time, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rems_ingest.feeds.registry import ANY, Feed, Registry, loopback_feed
from rems_ingest.hl7v2.codes import DEFAULT_LOCAL_CODES, CodeMap, Role
from rems_ingest.hl7v2.extract import SUPPORTED_VERSIONS

CodeRole = Literal["anc", "segs_abs", "bands_abs", "neut_pct", "segs_pct", "bands_pct", "wbc", "not_blood", "neut_by_unit"]


def valid_networks(v: list[str]) -> list[str]:
    """CIDR strings, each one checked (ValueError names the bad one)."""
    for net in v:
        ipaddress.ip_network(net, strict=False)
    return v


def _hhmm(text: str) -> time:
    h, _, m = text.strip().partition(":")
    return time(int(h), int(m or 0))


class FeedSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    networks: list[str] = []  # source networks (CIDR)
    certificate_names: list[str] = []  # TLS client certificate subject CN or subjectAltName
    fingerprints: list[str] = []  # optional: sha256 of the client certificate (hex, colons allowed)
    applications: list[str] = [ANY]  # MSH-3
    facilities: list[str] = Field(min_length=1)  # MSH-4
    authorities: list[str] = Field(min_length=1)  # PID-3 CX.4
    local_codes: dict[str, CodeRole] = {}
    units: dict[str, str] = {}
    draw_time: Literal["collection", "observation"] = "collection"
    versions: list[str] = sorted(SUPPORTED_VERSIONS)
    lab_hours: str = ""  # "07:00-19:00" in rules.timezone; empty: one threshold all day
    silent_after_minutes: float = Field(60, gt=0)
    silent_after_minutes_off_hours: float = Field(480, gt=0)

    @field_validator("networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        return valid_networks(v)

    @field_validator("versions")
    @classmethod
    def _versions(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - SUPPORTED_VERSIONS)
        if unknown:
            raise ValueError(f"{', '.join(unknown)} not supported (supported: {', '.join(sorted(SUPPORTED_VERSIONS))})")
        return v

    @field_validator("lab_hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        if v:
            try:
                start, end = v.split("-")
                _hhmm(start), _hhmm(end)
            except ValueError:
                raise ValueError("lab_hours is HH:MM-HH:MM, e.g. 07:00-19:00") from None
        return v

    @model_validator(mode="after")
    def _identified(self) -> FeedSettings:
        if not self.networks and not self.certificate_names:
            raise ValueError("a feed needs networks and/or certificate_names: who may send for it")
        return self

    def feed(self, name: str, site_codes: dict[str, Role]) -> Feed:
        hours = None
        if self.lab_hours:
            start, end = self.lab_hours.split("-")
            hours = (_hhmm(start), _hhmm(end))
        codes = {**DEFAULT_LOCAL_CODES, **site_codes, **{k.strip().upper(): Role(v) for k, v in self.local_codes.items()}}
        return Feed(
            name=name,
            networks=tuple(ipaddress.ip_network(n, strict=False) for n in self.networks),
            certificate_names=tuple(self.certificate_names),
            fingerprints=tuple(f.replace(":", "").lower() for f in self.fingerprints),
            applications=tuple(self.applications),
            facilities=tuple(self.facilities),
            authorities=tuple(self.authorities),
            code_map=CodeMap(codes, {k.strip().upper(): u for k, u in self.units.items()}),
            draw_time=self.draw_time,
            versions=frozenset(self.versions),
            lab_hours=hours,
            silent_after=timedelta(minutes=self.silent_after_minutes),
            silent_after_off_hours=timedelta(minutes=self.silent_after_minutes_off_hours),
        )


def registry(feeds: dict[str, FeedSettings], site_codes: dict[str, Role]) -> Registry:
    """The registered feeds; none registered: the loopback feed alone (this host may send)."""
    if not feeds:
        return Registry((loopback_feed(CodeMap({**DEFAULT_LOCAL_CODES, **site_codes})),))
    return Registry(tuple(f.feed(name, site_codes) for name, f in sorted(feeds.items())))
