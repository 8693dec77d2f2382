"""A deterministic, realistic Jingzhou 2024 reserve: twelve monthly reports of template rows.

``generate_demo(seed=..., reference=...)`` draws everything from one ``random.Random(seed)``:
the same seed gives identical output, another seed other data with the same totals (SPEC §2):
1,463 projects, 911 新开工 and 552 续建, Σ total investment 10,693.9 亿元, 42 国债 water
projects worth 48.7 亿元, about 30 leaders with 20–80 projects each.

Each project is given one *scenario* (green, or one kind of 2024 slippage) and its dates and
monthly investment are drawn to fit it, so that, judged as of 2024-12-31 under ``jingzhou-2024``,
every rule fires on some projects and about three in four stay green. Every row keeps the
template's date and money rules (actual dates ≤ 报告期, cumulative ≥ ytd ≥ 0, ...).
"""

from __future__ import annotations

import random
from calendar import monthrange
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from pipeline.demo import names as N
from pipeline.ingest.template import NATURE_CONTINUING, NATURE_NEW, UpdateRow
from pipeline.reference import Reference

YEAR = 2024
AS_OF = date(YEAR, 12, 31)
PROJECTS = 1463
NEW_STARTS = 911
TOTAL_INVESTMENT = 106_939_000  # 万元 = 10,693.9 亿元
BOND_PROJECTS = 42
BOND_INVESTMENT = 487_000  # 万元 = 48.7 亿元
BOND_NEW_STARTS = 34  # the rest of the 42 were already under way before 2024
MIN_INVESTMENT = 10_000  # 万元 = 1 亿元
LEADERS = 30
LEADER_MIN, LEADER_MAX = 20, 80
EMAIL_DOMAIN = "jingzhou.gov.cn"

LIST_ABOVE_100M = "亿元以上项目"
LIST_KEY = "省市重点项目"
LIST_INFRA = "重大基础设施项目"
LIST_BONDS = "国债和专项债项目"

# Scenarios (as of 2024-12-31 under jingzhou-2024) with how many projects get each, and which
# projects may: "new" (新开工), "cont" (续建) or "any". The rest are GREEN.
SCENARIOS: tuple[tuple[str, int, str], ...] = (
    ("START_Y", 35, "new"),  # planned start 11-30..12-30, not started: overdue 1–31 days
    ("START_Y_ESC", 8, "new"),  # planned start 11-01..11-29: yellow in Nov and Dec → ESCALATED
    ("START_R", 16, "new"),  # planned start ≤ 10-31, never started: overdue > 60 days
    ("DEFERRED", 15, "new"),  # start postponed to 2025: nothing due yet
    ("LATE_GREEN", 40, "new"),  # started 46–110 days late, now in stats: green again
    ("STATS_Y", 30, "new"),  # started in November, not in stats: 31–60 days
    ("STATS_R", 10, "new"),  # started ≤ 10-31, not in stats: > 60 days
    ("STATS_R_CONT", 3, "cont"),  # started before 2024, never 入统
    ("COMPLETED_NEW", 15, "new"),  # short project, started and completed in 2024
    ("COMPLETED", 110, "cont"),  # completed in 2024
    ("COMPLETION_Y", 25, "cont"),  # planned completion 11-30..12-30, not completed: 1–31 days
    ("COMPLETION_Y_ESC", 8, "cont"),  # planned completion 10-02..11-29 → ESCALATED
    ("COMPLETION_R", 10, "cont"),  # planned completion ≤ 10-01: overdue > 90 days
    ("PACE_Y", 55, "any"),  # on pace in November, 0.6 ≤ r < 0.8 in December
    ("PACE_Y_ESC", 14, "any"),  # 0.6 ≤ r < 0.8 in November and December → ESCALATED
    ("PACE_R", 18, "any"),  # r < 0.6
    ("STALE_Y", 35, "any"),  # last report 10-31: 61 days old
    ("STALE_R", 10, "any"),  # last report 08-31: 122 days old
    ("COORD_Y", 40, "any"),  # 需协调 raised in December
    ("COORD_ESC", 16, "any"),  # 需协调 open since an earlier month → ESCALATED
    ("COORD_RESOLVED", 40, "any"),  # 需协调 earlier in the year, since resolved
    ("SKIP_MONTH", 25, "any"),  # missed one monthly report between February and October
)

_START_MONTH_WEIGHTS = (4, 10, 16, 12, 11, 10, 8, 7, 8, 6, 5, 3)  # planned starts, Jan..Dec
_II_BY_INDUSTRY: dict[str, tuple[str, ...]] = {
    "先进制造业": ("34", "35", "36", "38", "39"), "农产品加工": ("13", "14"), "新能源": ("44",),
    "新材料": ("26", "29", "30"), "生物医药": ("27",), "交通基础设施": ("48", "54", "55"),
    "水利": ("76", "48"), "城市更新": ("47", "70", "78"), "社会民生": ("83", "84", "85"),
    "文化旅游": ("88", "90"), "现代服务业": ("51", "59", "64"), "能源": ("44", "45"),
}
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class DemoLeader:
    name: str
    title: str
    email: str


@dataclass(frozen=True)
class DemoReserve:
    reports: list[list[UpdateRow]]  # twelve monthly reports; report k is as of the end of month k
    leaders: list[DemoLeader]
    units: list[str]
    as_of: date


@dataclass
class _Project:
    """One project while it is being drawn (mutable), then written out as rows."""

    nature: str
    scenario: str = "GREEN"
    county: str = ""
    industry: str = ""
    name: str = ""
    code: str = ""
    lists: tuple[str, ...] = ()
    total: int = 0  # 万元
    prior: int = 0  # cumulative completed before 2024 (万元)
    plan: int = 0  # annual plan 2024 (万元)
    planned_start: date | None = None
    planned_completion: date | None = None
    actual_start: date | None = None
    actual_completion: date | None = None
    stats: date | None = None
    fractions: list[float] = field(default_factory=lambda: [0.0] * 12)  # ytd / plan per month end
    reports: list[bool] = field(default_factory=lambda: [True] * 12)
    coordination: list[bool] = field(default_factory=lambda: [False] * 12)
    problems: list[str | None] = field(default_factory=lambda: [None] * 12)
    leader: str = ""
    unit: str = ""
    flagship: bool = False


def month_end(month: int, year: int = YEAR) -> date:
    return date(year, month, monthrange(year, month)[1])


def _day_between(rng: random.Random, lo: date, hi: date) -> date:
    return lo + timedelta(days=rng.randint(0, (hi - lo).days))


def _largest_remainder(weights: list[float], total: int) -> list[int]:
    """Integers proportional to ``weights`` summing exactly to ``total`` (Hamilton's method)."""
    s = sum(weights)
    ideal = [total * w / s for w in weights]
    out = [int(x) for x in ideal]
    order = sorted(range(len(weights)), key=lambda i: (out[i] - ideal[i], i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


# --- money -------------------------------------------------------------------------------------


def _amounts(rng: random.Random, count: int, total: int, *, sigma: float, cap: float) -> list[int]:
    """``count`` amounts in 万元, each ≥ 1 亿元 and a multiple of 100 万元, summing to ``total``."""
    units, floor = total // 100, MIN_INVESTMENT // 100
    excess = []
    while len(excess) < count:  # redraw beyond the cap: no pile of equal giants
        x = rng.lognormvariate(0.0, sigma)
        if x <= cap:
            excess.append(x)
    return [(floor + e) * 100 for e in _largest_remainder(excess, units - floor * count)]


# --- dates -------------------------------------------------------------------------------------


def _planned_start(rng: random.Random, first: int = 1, last: int = 12) -> date:
    months = list(range(first, last + 1))
    m = rng.choices(months, weights=[_START_MONTH_WEIGHTS[i - 1] for i in months])[0]
    return date(YEAR, m, rng.randint(1, monthrange(YEAR, m)[1]))


def _completion_after(rng: random.Random, start: date, *, earliest: date) -> date:
    """A planned completion 10–40 months after ``start`` and not before ``earliest``."""
    months = rng.choice((10, 12, 12, 18, 18, 24, 24, 30, 36, 40))
    pc = start + timedelta(days=int(months * 30.44))
    if pc < earliest:
        pc = _day_between(rng, earliest, earliest + timedelta(days=330))
    return pc


def _time_new(rng: random.Random, p: _Project) -> None:
    """Dates of a 新开工 project for its scenario."""
    s = p.scenario
    pc_floor = date(2025, 2, 1)
    if s == "START_Y":
        p.planned_start = _day_between(rng, date(YEAR, 11, 30), date(YEAR, 12, 30))
    elif s == "START_Y_ESC":
        p.planned_start = _day_between(rng, date(YEAR, 11, 1), date(YEAR, 11, 29))
    elif s == "START_R":
        p.planned_start = _day_between(rng, date(YEAR, 3, 1), date(YEAR, 10, 31))
    elif s == "DEFERRED":
        p.planned_start = _day_between(rng, date(2025, 1, 10), date(2025, 6, 30))
        pc_floor = date(2026, 1, 1)
    elif s == "LATE_GREEN":
        p.planned_start = _planned_start(rng, 2, 8)
        p.actual_start = min(p.planned_start + timedelta(days=rng.randint(46, 110)), date(YEAR, 11, 15))
    elif s == "STATS_Y":
        p.actual_start = _day_between(rng, date(YEAR, 11, 1), date(YEAR, 11, 30))
        p.planned_start = p.actual_start - timedelta(days=rng.randint(0, 30))
    elif s in ("STATS_R", "COMPLETED_NEW"):
        p.planned_start = _planned_start(rng, 3, 9) if s == "STATS_R" else _planned_start(rng, 1, 4)
        p.actual_start = p.planned_start + timedelta(days=rng.randint(0, 30))
    else:  # started about on time; the paced and stale scenarios need an early enough start
        last_month, start_by = {
            "PACE_Y": (5, date(YEAR, 5, 31)), "PACE_Y_ESC": (5, date(YEAR, 5, 31)),
            "PACE_R": (5, date(YEAR, 5, 31)), "STALE_Y": (7, date(YEAR, 9, 30)),
            "STALE_R": (6, date(YEAR, 7, 31)), "COORD_ESC": (10, date(YEAR, 11, 30)),
            "COORD_Y": (11, date(YEAR, 11, 30)),  # started by November: green before December's issue
        }.get(s, (12, AS_OF))
        p.planned_start = _planned_start(rng, 1, last_month)
        roll = rng.random()
        offset = rng.randint(0, 20) if roll < 0.7 else rng.randint(21, 45) if roll < 0.9 else -rng.randint(1, 10)
        p.actual_start = max(date(YEAR, 1, 2), min(p.planned_start + timedelta(days=offset), start_by))
    if s == "COMPLETED_NEW":
        assert p.actual_start is not None and p.planned_start is not None
        p.planned_completion = p.planned_start + timedelta(days=rng.randint(180, 270))
        done = p.planned_completion + timedelta(days=rng.randint(-20, 5))
        p.actual_completion = min(max(done, p.actual_start + timedelta(days=90)), date(YEAR, 12, 20))
    else:
        assert p.planned_start is not None
        p.planned_completion = _completion_after(rng, p.planned_start, earliest=pc_floor)
    if p.actual_start is not None and s not in ("STATS_Y", "STATS_R"):
        p.stats = p.actual_start + timedelta(days=rng.randint(5, 28))


def _time_continuing(rng: random.Random, p: _Project) -> None:
    """Dates of a 续建 project (started before 2024) for its scenario."""
    s = p.scenario
    year = rng.choices((2019, 2020, 2021, 2022, 2023), weights=(1, 2, 3, 5, 9))[0]
    p.actual_start = _day_between(rng, date(year, 1, 5), date(year, 12, 20))
    p.planned_start = p.actual_start - timedelta(days=rng.randint(0, 45))
    if s != "STATS_R_CONT":
        p.stats = p.actual_start + timedelta(days=rng.randint(5, 28))
    windows = {
        "COMPLETED": (date(YEAR, 2, 1), date(YEAR, 12, 10)),
        "COMPLETION_Y": (date(YEAR, 11, 30), date(YEAR, 12, 30)),
        "COMPLETION_Y_ESC": (date(YEAR, 10, 2), date(YEAR, 11, 29)),
        "COMPLETION_R": (date(YEAR, 3, 1), date(YEAR, 10, 1)),
    }
    if s in windows:
        p.planned_completion = _day_between(rng, *windows[s])
    else:
        p.planned_completion = _day_between(rng, date(2025, 2, 1), date(2027, 12, 31))
    if p.planned_completion < p.actual_start + timedelta(days=300):
        p.actual_start = min(p.planned_completion - timedelta(days=rng.randint(300, 700)), date(YEAR - 1, 12, 20))
        p.planned_start = p.actual_start - timedelta(days=rng.randint(0, 45))
        if p.stats is not None:
            p.stats = p.actual_start + timedelta(days=rng.randint(5, 28))
    if s == "COMPLETED":
        done = p.planned_completion + timedelta(days=rng.randint(-30, 10))
        p.actual_completion = min(max(done, date(YEAR, 1, 10)), date(YEAR, 12, 20))


# --- investment over the year --------------------------------------------------------------------


def _month_of(day: date | None) -> int | None:
    """The first 2024 report (1..12) whose 报告期 is on or after ``day``; 1 for earlier days."""
    if day is None or day.year > YEAR:
        return None
    return 1 if day.year < YEAR else day.month


def _plan(rng: random.Random, p: _Project) -> None:
    """Prior cumulative investment and the 2024 annual plan."""
    assert p.planned_start is not None and p.planned_completion is not None
    finishes_2024 = p.planned_completion.year == YEAR or p.actual_completion is not None
    if p.nature == NATURE_CONTINUING:
        assert p.actual_start is not None
        start = p.actual_start
        elapsed = (date(YEAR, 1, 1) - start).days / max(1, (p.planned_completion - start).days)
        p.prior = int(p.total * min(0.92, max(0.03, elapsed * rng.uniform(0.75, 1.0))))
        remaining = p.total - p.prior
        if finishes_2024:
            p.plan = remaining
        else:
            years_left = max(1.0, (p.planned_completion - date(YEAR, 1, 1)).days / 365.25)
            p.plan = max(1, int(remaining * min(0.7, rng.uniform(0.8, 1.2) / years_left)))
    elif p.scenario == "DEFERRED":
        p.plan = 0
    elif finishes_2024:
        p.plan = p.total
    else:
        active = max(1.0, (AS_OF - p.planned_start).days / 30.44)
        duration = max(1.0, (p.planned_completion - p.planned_start).days / 30.44)
        p.plan = max(1, int(p.total * min(0.6, max(0.05, active / duration * rng.uniform(0.8, 1.2)))))


def _fractions(rng: random.Random, p: _Project) -> None:
    """ytd / annual plan at each month end, non-decreasing, 0 before the actual start."""
    s = p.scenario
    first = _month_of(p.actual_start)
    if first is None or p.plan == 0:
        return
    done = _month_of(p.actual_completion)
    curve = [0.0] * 13
    if done is not None:  # completes in month `done`: the whole plan by then
        for k in range(1, 13):
            curve[k] = 1.0 if k >= done else min(1.0, k / done * rng.uniform(0.95, 1.0))
    elif s in ("PACE_Y", "PACE_Y_ESC", "PACE_R"):
        if s == "PACE_Y":  # on pace at the end of November (r ≥ 0.8), stalls in December
            nov = rng.uniform(0.745, 0.775)
            dec = nov + rng.uniform(0.005, 0.02)
        elif s == "PACE_Y_ESC":  # 0.6 ≤ r < 0.8 at both month ends
            nov = rng.uniform(0.57, 0.70)
            dec = rng.uniform(max(nov + 0.01, 0.62), 0.78)
        else:
            dec = rng.uniform(0.2, 0.55)
            nov = dec * rng.uniform(0.88, 0.99)
        for k in range(1, 11):
            curve[k] = nov * k / 11 * (rng.uniform(0.55, 0.8) if k <= 2 else rng.uniform(0.97, 1.0))
        curve[11], curve[12] = nov, dec
    else:
        if s.startswith("COMPLETION"):
            pace, lo, hi = rng.uniform(0.85, 0.96), 0.97, 1.0
        elif s == "STALE_Y":  # its last report (October) must still be on pace as of December
            pace, lo, hi = rng.uniform(1.0, 1.12), 0.99, 1.03
        else:
            pace, lo, hi = rng.uniform(0.86, 1.15), 0.97, 1.03
        for k in range(1, 13):
            slow = rng.uniform(0.55, 0.8) if k <= 2 else rng.uniform(lo, hi) if k < 12 else 1.0
            curve[k] = pace * k / 12 * slow
    running = 0.0
    for k in range(1, 13):
        running = max(running, curve[k])
        p.fractions[k - 1] = running if k >= first else 0.0


# --- who answers for it, where it is listed ----------------------------------------------------


def _unit(rng: random.Random, p: _Project) -> str:
    county_government = N.ZONE_UNITS.get(p.county, f"{p.county}人民政府")
    roll = rng.random()
    if roll < 0.45:
        return county_government
    if roll < 0.65 and p.industry in N.COUNTY_DEPARTMENTS and p.county not in N.ZONE_UNITS:
        return p.county + rng.choice(N.COUNTY_DEPARTMENTS[p.industry])
    if roll < 0.85 and p.industry in N.CITY_UNITS:
        return rng.choice(N.CITY_UNITS[p.industry])
    if p.industry in N.COMPANY_SUFFIX and not p.flagship:
        return f"湖北{rng.choice(N.BRANDS)}{N.COMPANY_SUFFIX[p.industry]}"
    return county_government


def _name(rng: random.Random, p: _Project, used: set[str]) -> str:
    towns = N.TOWNS.get(p.county, ("城东片区", "城西片区", "城南片区", "城北片区"))
    templates = N.NAME_TEMPLATES.get(p.industry, N.GENERIC_TEMPLATES)
    name = ""
    for _ in range(12):
        t, t2 = rng.sample(towns, 2) if len(towns) > 1 else (towns[0], towns[0])
        name = rng.choice(templates).format(p=p.county, t=t, t2=t2.rstrip("镇乡"), b=rng.choice(N.BRANDS))
        if name not in used:
            return name
    for phase in ("二期", "三期", "四期", "五期", "六期", "七期", "八期", "九期"):
        phased = name.replace("项目", f"（{phase}）项目") if name.endswith("项目") else f"{name}（{phase}）"
        if phased not in used:
            return phased
    return f"{name}（{len(used)}）"


def _leaders(rng: random.Random, projects: list[_Project], counties: list[str]) -> list[DemoLeader]:
    """30 leaders, each answering for 20–80 projects, mostly in one or two counties."""
    people = N.leader_names(rng, LEADERS)
    titles = list(N.LEADER_TITLES[:LEADERS])
    extra = _largest_remainder([rng.uniform(0.2, 1.8) for _ in range(LEADERS)], len(projects) - LEADER_MIN * LEADERS)
    sizes = [LEADER_MIN + e for e in extra]
    while max(sizes) > LEADER_MAX:  # hand the surplus over to the lightest portfolio
        sizes[sizes.index(max(sizes))] -= 1
        sizes[sizes.index(min(sizes))] += 1
    rank = {c: i for i, c in enumerate(counties)}
    ordered = sorted(projects, key=lambda p: (rank[p.county], p.industry, rng.random()))
    at = 0
    leaders = []
    for person, title, size in zip(people, titles, sizes):
        for p in ordered[at: at + size]:
            p.leader = person.name
        at += size
        leaders.append(DemoLeader(name=person.name, title=title, email=f"{person.local_part}@{EMAIL_DOMAIN}"))
    return leaders


def _problems(rng: random.Random, p: _Project) -> None:
    """需协调 months and 存在问题 texts, following the scenario."""
    s = p.scenario
    text = rng.choice(N.PROBLEMS_COORDINATION).format(n=rng.randint(3, 60), m=rng.randint(5, 80) * 100)
    months: range = range(0)
    if s == "COORD_Y":
        months = range(12, 13)
    elif s == "COORD_ESC":
        months = range(rng.randint(5, 11), 13)
    elif s == "COORD_RESOLVED":
        a = rng.randint(2, 9)
        months = range(a, min(10, a + rng.randint(0, 3)) + 1)
    elif s == "START_R" and rng.random() < 0.5:
        assert p.planned_start is not None
        months = range(p.planned_start.month, 13)
    for k in months:
        p.coordination[k - 1] = True
        p.problems[k - 1] = text
    plain_kind, since = {
        "START_Y": ("start", 11), "START_Y_ESC": ("start", 11), "START_R": ("start", 0),
        "STATS_Y": ("stats", 12), "STATS_R": ("stats", 0), "STATS_R_CONT": ("stats", 1),
        "PACE_Y": ("pace", 12), "PACE_Y_ESC": ("pace", 10), "PACE_R": ("pace", 8),
        "COMPLETION_Y": ("completion", 12), "COMPLETION_Y_ESC": ("completion", 11),
        "COMPLETION_R": ("completion", 0),
    }.get(s, ("", 0))
    if plain_kind and not months:
        if since == 0:
            day = p.actual_start if s == "STATS_R" else p.planned_completion if s == "COMPLETION_R" else p.planned_start
            assert day is not None
            since = min(day.month + 1, 12)
        plain = rng.choice(N.PROBLEMS_PLAIN[plain_kind])
        for k in range(since, 13):
            p.problems[k - 1] = plain


# --- the reserve --------------------------------------------------------------------------------


def _assign_scenarios(rng: random.Random, projects: list[_Project]) -> None:
    free = {"new": [p for p in projects if p.nature == NATURE_NEW],
            "cont": [p for p in projects if p.nature == NATURE_CONTINUING]}
    for pool in free.values():
        rng.shuffle(pool)
    for scenario, count, who in sorted(SCENARIOS, key=lambda s: s[2] == "any"):
        for _ in range(count):
            if who == "any":
                who_now = "new" if rng.random() < len(free["new"]) / (len(free["new"]) + len(free["cont"])) else "cont"
            else:
                who_now = who
            free[who_now].pop().scenario = scenario


def generate_demo(*, seed: int = 2024, reference: Reference) -> DemoReserve:
    """The demo reserve for ``seed``: twelve monthly reports of 2024, the leaders and the units."""
    rng = random.Random(seed)
    counties = [c.name for c in reference.counties]
    region = {c.name: c.code for c in reference.counties}
    industries = list(reference.industries) or sorted(N.INDUSTRY_WEIGHTS)
    water = "水利" if "水利" in industries else industries[0]
    lists = set(reference.lists)

    projects = [_Project(nature=NATURE_NEW if i < NEW_STARTS else NATURE_CONTINUING) for i in range(PROJECTS)]
    rng.shuffle(projects)
    _assign_scenarios(rng, projects)

    # 42 国债 water projects (mostly new starts), the flagships, then everyone else by weight.
    eligible = [p for p in projects if p.scenario != "DEFERRED"]  # 国债 projects had to start in 2024
    bonds = [p for p in eligible if p.nature == NATURE_NEW][:BOND_NEW_STARTS]
    bonds += [p for p in eligible if p.nature == NATURE_CONTINUING][: BOND_PROJECTS - BOND_NEW_STARTS]
    for p in bonds:
        p.industry = water
    taken = {id(p) for p in bonds}
    for name, county, industry, nature in N.FLAGSHIPS:
        if county not in region or industry not in industries:
            continue
        p = next(q for q in projects if q.nature == nature and id(q) not in taken)
        taken.add(id(p))
        p.name, p.county, p.industry, p.flagship = name, county, industry, True
    rest = [p for p in projects if not p.county]
    sizes = _largest_remainder([N.COUNTY_WEIGHTS.get(c, N.DEFAULT_COUNTY_WEIGHT) for c in counties], len(rest))
    slots = [c for c, n in zip(counties, sizes) for _ in range(n)]
    rng.shuffle(slots)
    weights = [N.INDUSTRY_WEIGHTS.get(i, N.DEFAULT_INDUSTRY_WEIGHT) for i in industries]
    for p, county in zip(rest, slots):
        p.county = county
        if not p.industry:
            p.industry = rng.choices(industries, weights=weights)[0]

    # Money: exact totals; infrastructure and the flagships tend to the largest amounts.
    bond_ids = {id(p) for p in bonds}
    for p, amount in zip(bonds, _amounts(rng, BOND_PROJECTS, BOND_INVESTMENT, sigma=0.6, cap=5.0)):
        p.total = amount
    others = [p for p in projects if id(p) not in bond_ids]
    amounts = sorted(_amounts(rng, len(others), TOTAL_INVESTMENT - BOND_INVESTMENT, sigma=1.3, cap=40.0), reverse=True)
    scores = [(N.INDUSTRY_SCALE.get(p.industry, 1.0) * (4.0 if p.flagship else 1.0) * rng.lognormvariate(0.0, 0.8), i)
              for i, p in enumerate(others)]
    for (_, i), amount in zip(sorted(scores, reverse=True), amounts):  # bigger industries, bigger projects
        others[i].total = amount

    for p in projects:
        (_time_new if p.nature == NATURE_NEW else _time_continuing)(rng, p)
        _plan(rng, p)
        _fractions(rng, p)
        _problems(rng, p)
        if p.scenario == "STALE_Y":
            p.reports[10:] = [False, False]
        elif p.scenario == "STALE_R":
            p.reports[8:] = [False] * 4
        elif p.scenario == "SKIP_MONTH":
            p.reports[rng.randint(2, 10) - 1] = False

    # Codes, names, units, lists.
    serials = rng.sample(range(1, 1_000_000), PROJECTS)
    used_names = {p.name for p in projects if p.name}
    by_size = sorted(projects, key=lambda p: -p.total)
    key_projects = {id(p) for p in by_size[:200]} | {id(p) for p in rng.sample(by_size[200:], 130)}
    infra = [p for p in by_size if p.industry in N.INFRASTRUCTURE]
    infra_ids = {id(p) for p in infra[:110]} | {id(p) for p in rng.sample(infra[110:], min(40, len(infra[110:])))}
    for p, serial in zip(projects, serials):
        assert p.planned_start is not None
        first = p.actual_start if p.actual_start is not None and p.actual_start < p.planned_start else p.planned_start
        year = max(2019, min(YEAR, first.year - rng.choice((0, 0, 1))))
        ii = rng.choice(_II_BY_INDUSTRY.get(p.industry, ("48", "78")))
        p.code = f"{year}-{region[p.county]}-{ii}-{rng.choice(('01', '01', '02', '03', '04'))}-{serial:06d}"
        if not p.name:
            p.name = _name(rng, p, used_names)
            used_names.add(p.name)
        p.unit = _unit(rng, p)
        on = {LIST_ABOVE_100M}
        if id(p) in key_projects:
            on.add(LIST_KEY)
        if id(p) in infra_ids:
            on.add(LIST_INFRA)
        if id(p) in bond_ids:
            on.add(LIST_BONDS)
        p.lists = tuple(name for name in reference.lists if name in on and name in lists)

    leaders = _leaders(rng, projects, counties)
    projects.sort(key=lambda p: p.code)
    reports = [_report(projects, k) for k in range(1, 13)]
    units = sorted({p.unit for p in projects})
    return DemoReserve(reports=reports, leaders=leaders, units=units, as_of=AS_OF)


def _known(day: date | None, as_of: date) -> date | None:
    """A date as a report of ``as_of`` shows it: only once it has happened."""
    return day if day is not None and day <= as_of else None


def _report(projects: list[_Project], month: int) -> list[UpdateRow]:
    """The monthly report as of the end of ``month``: one row per project that reported."""
    as_of = month_end(month)
    rows: list[UpdateRow] = []
    i = month - 1
    for p in projects:
        if not p.reports[i]:
            continue
        ytd = (Decimal(round(p.plan * p.fractions[i] * 100)) / 100).quantize(_CENT)
        started = _known(p.actual_start, as_of)
        rows.append(UpdateRow(
            code=p.code, name=p.name, county=p.county, nature=p.nature, total_investment=Decimal(p.total),
            as_of=as_of, industry=p.industry, lists=p.lists, annual_plan=Decimal(p.plan),
            planned_start=p.planned_start, planned_completion=p.planned_completion, actual_start=started,
            actual_completion=_known(p.actual_completion, as_of), stats_included_on=_known(p.stats, as_of),
            cumulative_completed=Decimal(p.prior) + ytd,
            ytd_completed=ytd, leader=p.leader, unit=p.unit, problems=p.problems[i],
            needs_coordination=p.coordination[i], row_number=len(rows) + 2,
        ))
    return rows
