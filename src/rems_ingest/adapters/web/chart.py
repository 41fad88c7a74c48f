"""The ANC chart as server-rendered SVG: no JavaScript, no CDN, prints as drawn.

Bands follow the patient's population and the rules profile (general 1500/1000/500, BEN
1000/500, UK green/amber/red); points are drawn by result status — final a filled circle,
corrected a diamond, preliminary a hollow circle, deleted or wrong a cross — and each carries
its value, date and category in text (a <title>), so nothing is told by colour alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Any

from rems_ingest.core.categories import categorize
from rems_ingest.core.model import Population
from rems_ingest.core.policy import RulesPolicy

W, H, LEFT, RIGHT, TOP, BOTTOM = 820, 300, 56, 16, 12, 34
STATUS_NAMES = {"F": "final", "C": "corrected", "P": "preliminary", "D": "deleted", "W": "wrong", "X": "not_done"}
COLOURS = {"normal": "#dff3e4", "green": "#dff3e4", "mild": "#fff6cc", "amber": "#ffe3b3", "ben_neutropenia": "#fff6cc", "moderate": "#ffd9b3", "severe": "#f8c9c9", "red": "#f8c9c9"}


@dataclass(frozen=True)
class Band:
    low: Decimal
    high: Decimal | None
    name: str


def bands(policy: RulesPolicy, population: Population) -> list[Band]:
    if policy.uk:
        return [Band(policy.uk_green_neut, None, "green"), Band(policy.uk_red_neut, policy.uk_green_neut, "amber"), Band(Decimal(0), policy.uk_red_neut, "red")]
    if population is Population.BEN:
        return [Band(policy.ben_normal, None, "normal"), Band(policy.ben_severe, policy.ben_normal, "ben_neutropenia"), Band(Decimal(0), policy.ben_severe, "severe")]
    return [Band(policy.gp_normal, None, "normal"), Band(policy.gp_mild, policy.gp_normal, "mild"), Band(policy.gp_moderate, policy.gp_mild, "moderate"), Band(Decimal(0), policy.gp_moderate, "severe")]


@dataclass(frozen=True)
class _Scale:
    """Time on x, cells/uL on y, inside the plot area."""

    t0: datetime
    t1: datetime
    top: Decimal

    @property
    def width(self) -> int:
        return W - LEFT - RIGHT

    @property
    def height(self) -> int:
        return H - TOP - BOTTOM

    def x(self, t: datetime) -> float:
        return LEFT + self.width * (t - self.t0).total_seconds() / (self.t1 - self.t0).total_seconds()

    def y(self, v: Decimal) -> float:
        return TOP + self.height * (1 - float(min(v, self.top) / self.top))


def _scale(points: list[tuple[datetime, Decimal, str]]) -> _Scale:
    top = max([Decimal(3000), *(v * Decimal("1.1") for _, v, _ in points)])
    t0 = min((p[0] for p in points), default=datetime.now())
    t1 = max((p[0] for p in points), default=t0)
    if t1 - t0 < timedelta(days=7):
        t0, t1 = t0 - timedelta(days=3), t1 + timedelta(days=4)
    return _Scale(t0, t1, top)


def _as_drawn(stamp: str) -> datetime:
    """A draw time on the chart's axis: the lab's own wall clock, offset or not. Labs send both
    (and one patient's history mixes them); comparing an aware with a naive time is an error,
    and the axis shows dates, which the lab's wall clock gives (as the rules count them)."""
    return datetime.fromisoformat(stamp).replace(tzinfo=None)


def svg(policy: RulesPolicy, population: Population, results: list[dict[str, object]], episodes: Sequence[Any] = ()) -> str:
    points = [(_as_drawn(str(r["observed_at"])), Decimal(str(r["anc_per_ul"])), STATUS_NAMES.get(str(r["status"]), str(r["status"]))) for r in results]
    sc = _scale(points)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" aria-labelledby="chart-title" class="anc-chart">',
           f'<title id="chart-title">ANC over time, {len(points)} result(s), bands for {escape(population.value)} ({escape(policy.label)})</title>']
    out += _bands(sc, bands(policy, population)) + _episodes(sc, episodes) + _axis(sc)
    line = [(sc.x(t), sc.y(v)) for t, v, st in points if st in ("final", "corrected")]
    if len(line) > 1:
        out.append('<polyline fill="none" stroke="#445" stroke-width="1.2" points="' + " ".join(f"{a:.1f},{b:.1f}" for a, b in line) + '"/>')
    out += [_point(sc.x(t), sc.y(v), v, t, st, categorize(policy, population, v).value.replace("_", " ")) for t, v, st in points]
    out.append("</svg>")
    return "\n".join(out)


def _bands(sc: _Scale, bs: list[Band]) -> list[str]:
    out = []
    for b in bs:
        hi = b.high if b.high is not None else sc.top
        out.append(f'<rect class="band band-{b.name}" data-band="{b.name}" data-low="{b.low}" x="{LEFT}" y="{sc.y(hi):.1f}" width="{sc.width}" height="{max(0.0, sc.y(b.low) - sc.y(hi)):.1f}" fill="{COLOURS[b.name]}"><title>{b.name.replace("_", " ")}: {b.low}{"+" if b.high is None else f"–{b.high}"} /uL</title></rect>')
        if b.low > 0:
            out.append(f'<text x="{LEFT - 4}" y="{sc.y(b.low) + 4:.1f}" text-anchor="end" font-size="11">{b.low}</text>')
    return out


def _episodes(sc: _Scale, episodes: Sequence[Any]) -> list[str]:
    """Held spans, shaded behind the points and named in a <title>."""
    out = []
    for e in episodes:
        x0 = sc.x(max(sc.t0, datetime.combine(e.start, datetime.min.time())))
        x1 = sc.x(min(sc.t1, datetime.combine(e.end, datetime.min.time()))) if e.end else LEFT + sc.width
        out.append(f'<rect class="episode" x="{x0:.1f}" y="{TOP}" width="{max(2.0, x1 - x0):.1f}" height="{sc.height}" fill="#555" fill-opacity="0.15"><title>{escape(e.what)}: {e.start} to {e.end or "now"}</title></rect>')
    return out


def _axis(sc: _Scale) -> list[str]:
    out = [f'<text x="{LEFT + 4}" y="{TOP + 12}" font-size="11">cells/uL</text>']
    for i in range(5):
        t = sc.t0 + (sc.t1 - sc.t0) * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"
        out.append(f'<text x="{sc.x(t):.1f}" y="{H - 12}" text-anchor="{anchor}" font-size="11">{t.date()}</text>')
    return out


def _point(cx: float, cy: float, v: Decimal, t: datetime, st: str, cat: str) -> str:
    """One result, its shape by status and its value, date and category in text."""
    label = f"<title>{v.normalize():f}/uL on {t.date()}: {cat} ({st})</title>"
    attrs = f'class="point point-{st}" data-status="{st}" data-anc="{v.normalize():f}" data-category="{cat}"'
    if st == "corrected":
        return f'<path {attrs} d="M{cx:.1f},{cy - 6:.1f} L{cx + 6:.1f},{cy:.1f} L{cx:.1f},{cy + 6:.1f} L{cx - 6:.1f},{cy:.1f} Z" fill="#114">{label}</path>'
    if st == "preliminary":
        return f'<circle {attrs} cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="#fff" stroke="#114" stroke-width="2">{label}</circle>'
    if st in ("deleted", "wrong"):
        return f'<path {attrs} d="M{cx - 5:.1f},{cy - 5:.1f} L{cx + 5:.1f},{cy + 5:.1f} M{cx - 5:.1f},{cy + 5:.1f} L{cx + 5:.1f},{cy - 5:.1f}" stroke="#a00" stroke-width="2">{label}</path>'
    return f'<circle {attrs} cx="{cx:.1f}" cy="{cy:.1f}" r="4.5" fill="#114">{label}</circle>'


def sparkline(values: list[int], width: int = 240, height: int = 36) -> str:
    """Messages per hour as bars, the newest on the right; the counts are in the <title>."""
    top = max([1, *values])
    bar = width / max(1, len(values))
    bars = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - height * v / top:.1f}" width="{max(1.0, bar - 1):.1f}" height="{height * v / top:.1f}" fill="#1d3557"/>' for i, v in enumerate(values)
    )
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img"><title>messages per hour, last 24 h: {", ".join(map(str, values))}</title>{bars}</svg>'
