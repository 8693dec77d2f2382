"""Loading schemes: the shipped ones, a third city's with no code change, and every refusal."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from textwrap import dedent

import pytest

from pipeline.facts import ProjectFacts
from pipeline.rules import Color, SchemeError, evaluate, list_schemes, load_scheme

CONFIG = Path(__file__).resolve().parent.parent / "config"

GOOD_RULE = """\
  - code: START_OVERDUE
    name: 未按期开工
    metric: start_overdue_days
    yellow: {min: 1, max: 60}
    red: {above: 60}
    message: "计划{planned_start}开工，已逾期{overdue_days}天"
"""


def write_scheme(tmp_path: Path, rules: str, *, header: str | None = None, filename: str = "test-city.yaml") -> Path:
    head = header if header is not None else "name: test-city\nversion: 3\ntitle: 测试市方案\n"
    path = tmp_path / filename
    path.write_text(head + "rules:\n" + dedent(rules), encoding="utf-8")
    return path


def refused(path: Path) -> str:
    with pytest.raises(SchemeError) as caught:
        load_scheme(str(path), config_dir=CONFIG)
    message = str(caught.value)
    assert str(path) in message  # every refusal names the file
    return message


# --- what loads -------------------------------------------------------------------------------------

def test_shipped_schemes_are_listed_and_load() -> None:
    names = list_schemes(CONFIG)
    assert {"jingzhou-2024", "yinchuan-2025"} <= set(names)
    for name in names:
        scheme = load_scheme(name, config_dir=CONFIG)
        assert scheme.name == name
        assert scheme.version >= 1
        assert scheme.title
        assert scheme.completed_projects == frozenset({"NOT_IN_STATS"})


def test_jingzhou_rules_and_exact_thresholds() -> None:
    scheme = load_scheme("jingzhou-2024", config_dir=CONFIG)
    assert [r.code for r in scheme.rules] == [
        "START_OVERDUE", "COMPLETION_OVERDUE", "NOT_IN_STATS", "BEHIND_PACE", "STALE", "NEEDS_COORDINATION",
        "ESCALATED",
    ]
    assert [r.name for r in scheme.rules] == ["未按期开工", "未按期竣工", "未入统", "投资进度滞后", "数据未更新", "问题待协调", "连续黄牌"]
    pace = scheme.rule("BEHIND_PACE")
    assert {b.color: (b.min, b.below) for b in pace.bands} == {
        Color.YELLOW: (Fraction(3, 5), Fraction(4, 5)), Color.RED: (None, Fraction(3, 5)),
    }
    assert pace.when.month_from == 3


def test_load_by_path_and_yml_suffix(tmp_path: Path) -> None:
    path = write_scheme(tmp_path, GOOD_RULE, filename="other.yml")
    scheme = load_scheme(str(path), config_dir=CONFIG)
    assert (scheme.name, scheme.version, scheme.source) == ("test-city", 3, path)


def test_a_third_citys_scheme_needs_no_code_change(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    (config_dir / "schemes").mkdir(parents=True)
    (config_dir / "schemes" / "xiangyang-2026.yaml").write_text(
        dedent(
            """\
            name: xiangyang-2026
            version: 2
            title: 襄阳市重大项目红黄绿挂牌（2026）
            completed_projects: []
            rules:
              - code: LATE_START
                name: 开工滞后
                metric: start_overdue_days
                yellow: {min: 1, max: 15}
                red: {above: 15}
                message: "计划{planned_start}开工，已逾期{overdue_days}天"
              - code: SLOW
                name: 投资偏慢
                metric: pace_ratio
                when: {month_from: 2, month_to: 11}
                yellow: {min: 0.75, below: 0.9}
                red: {below: 0.75}
                message: "完成序时进度的{pace_percent}%"
              - code: COORDINATE
                name: 需协调
                metric: needs_coordination
                red: {equals: true}
                message: "问题：{problems}"
            """
        ),
        encoding="utf-8",
    )
    assert list_schemes(config_dir) == ["xiangyang-2026"]
    scheme = load_scheme("xiangyang-2026", config_dir=config_dir)
    d = date(2026, 4, 30)  # f = 1/3: a plan of 1200 has a target of 400; 0.9 × 400 = 360
    row = ProjectFacts(code="2026-420600-44-01-000001", as_of=d, planned_start=date(2026, 4, 10))
    flag = evaluate(scheme, row, d, None)
    assert (flag.color, flag.scheme, flag.scheme_version) == (Color.RED, "xiangyang-2026", 2)
    assert flag.reasons[0].code == "LATE_START" and flag.reasons[0].values["overdue_days"] == 20
    started = ProjectFacts(code="x", as_of=d, actual_start=date(2026, 1, 5), annual_plan=Decimal(1200),
                           ytd_completed=Decimal(360))
    assert evaluate(scheme, started, d, None).color is Color.GREEN  # r = 0.9 exactly
    slower = ProjectFacts(code="x", as_of=d, actual_start=date(2026, 1, 5), annual_plan=Decimal(1200),
                          ytd_completed=Decimal(300), needs_coordination=True, problems="资金")
    flag = evaluate(scheme, slower, d, None)
    assert [(r.code, r.color) for r in flag.reasons] == [("COORDINATE", Color.RED), ("SLOW", Color.YELLOW)]
    assert flag.reasons[1].message == "完成序时进度的75%"
    december = date(2026, 12, 31)
    late = ProjectFacts(code="x", as_of=december, actual_start=date(2026, 1, 5), annual_plan=Decimal(1200))
    assert evaluate(scheme, late, december, None).color is Color.GREEN  # SLOW applies only Feb–Nov


def test_touching_bands_are_not_overlapping(tmp_path: Path) -> None:
    path = write_scheme(tmp_path, """\
      - code: PACE
        name: 进度
        metric: pace_ratio
        yellow: {above: 0.6, below: 0.8}
        red: {max: 0.6}
        message: "{pace_ratio}"
    """)
    assert load_scheme(str(path), config_dir=CONFIG).rules[0].code == "PACE"


def test_band_shorthand_list(tmp_path: Path) -> None:
    path = write_scheme(tmp_path, GOOD_RULE.replace("{min: 1, max: 60}", "[1, 60]"))
    band = load_scheme(str(path), config_dir=CONFIG).rules[0].bands[-1]
    assert (band.color, band.min, band.max) == (Color.YELLOW, 1, 60)


# --- what is refused ----------------------------------------------------------------------------------------

def test_scheme_error_is_a_value_error() -> None:
    assert issubclass(SchemeError, ValueError)


def test_unknown_metric_suggests_the_closest(tmp_path: Path) -> None:
    message = refused(write_scheme(tmp_path, GOOD_RULE.replace("start_overdue_days", "start_overdue_day")))
    assert "START_OVERDUE" in message
    assert "未知指标「start_overdue_day」" in message
    assert "start_overdue_days" in message


def test_unknown_colour(tmp_path: Path) -> None:
    message = refused(write_scheme(tmp_path, GOOD_RULE.replace("red:", "orange:")))
    assert "START_OVERDUE" in message and "未知颜色「orange」" in message


def test_unknown_operator(tmp_path: Path) -> None:
    message = refused(write_scheme(tmp_path, GOOD_RULE.replace("above: 60", "gte: 60")))
    assert "START_OVERDUE" in message and "未知运算符「gte」" in message


def test_unknown_field_in_a_rule(tmp_path: Path) -> None:
    message = refused(write_scheme(tmp_path, GOOD_RULE + "    mesage: x\n"))
    assert "START_OVERDUE" in message and "未知字段「mesage」" in message and "message" in message


@pytest.mark.parametrize(
    ("band", "fault"),
    [
        ("{min: abc, max: 60}", "阈值「abc」不是有效数字"),
        ("{min: true, max: 60}", "不是有效数字"),
        ("{min: .inf}", "不是有效数字"),
        ("{min: 61, max: 60}", "区间为空"),
        ("{above: 60, max: 60}", "区间为空"),
        ("{}", "区间为空"),
        ("{min: 1, above: 2}", "min 与 above 不能同时使用"),
        ("{equals: true}", "equals 只能用于布尔指标"),
        ("5", "区间应为映射"),
    ],
)
def test_bad_threshold(tmp_path: Path, band: str, fault: str) -> None:
    message = refused(write_scheme(tmp_path, GOOD_RULE.replace("{min: 1, max: 60}", band)))
    assert "START_OVERDUE" in message and "yellow" in message and fault in message


def test_numeric_operator_on_a_boolean_metric(tmp_path: Path) -> None:
    message = refused(write_scheme(tmp_path, """\
      - code: NEEDS_COORDINATION
        name: 问题待协调
        metric: needs_coordination
        yellow: {min: 1}
        message: "{problems}"
    """))
    assert "NEEDS_COORDINATION" in message and "布尔指标只能使用 equals" in message


@pytest.mark.parametrize(
    ("yellow", "red"),
    [
        ("{min: 1, max: 60}", "{min: 60}"),  # share 60
        ("{min: 0.6, max: 0.8}", "{below: 0.7}"),
        ("{min: 0.6, below: 0.8}", "{max: 0.6}"),  # share 0.6
        ("{above: 10}", "{above: 30}"),
    ],
)
def test_overlapping_bands(tmp_path: Path, yellow: str, red: str) -> None:
    rule = GOOD_RULE.replace("{min: 1, max: 60}", yellow).replace("{above: 60}", red)
    message = refused(write_scheme(tmp_path, rule))
    assert "START_OVERDUE" in message and "重叠" in message


def test_overlapping_boolean_bands(tmp_path: Path) -> None:
    message = refused(write_scheme(tmp_path, """\
      - code: COORD
        name: 问题待协调
        metric: needs_coordination
        yellow: {equals: true}
        red: {equals: true}
        message: "{problems}"
    """))
    assert "COORD" in message and "重叠" in message


def test_duplicate_rule_code(tmp_path: Path) -> None:
    message = refused(write_scheme(tmp_path, GOOD_RULE + GOOD_RULE))
    assert "START_OVERDUE" in message and "重复" in message


def test_unknown_placeholder_in_message(tmp_path: Path) -> None:
    message = refused(write_scheme(tmp_path, GOOD_RULE.replace("{overdue_days}天", "{days}天")))
    assert "START_OVERDUE" in message and "{days}" in message and "overdue_days" in message


def test_unbalanced_braces_in_message(tmp_path: Path) -> None:
    message = refused(write_scheme(tmp_path, GOOD_RULE.replace("{overdue_days}天", "{overdue_days天")))
    assert "START_OVERDUE" in message and "消息模板" in message


@pytest.mark.parametrize("field", ["name", "metric", "message"])
def test_missing_rule_field(tmp_path: Path, field: str) -> None:
    rule = "\n".join(line for line in GOOD_RULE.splitlines() if not line.strip().startswith(f"{field}:")) + "\n"
    message = refused(write_scheme(tmp_path, rule))
    assert "START_OVERDUE" in message and f"缺少字段「{field}」" in message


def test_missing_rule_code(tmp_path: Path) -> None:
    message = refused(write_scheme(tmp_path, GOOD_RULE.replace("  - code: START_OVERDUE\n    name", "  - name")))
    assert "第1条" in message and "code" in message


def test_no_bands(tmp_path: Path) -> None:
    rule = GOOD_RULE.replace("    yellow: {min: 1, max: 60}\n", "").replace("    red: {above: 60}\n", "")
    message = refused(write_scheme(tmp_path, rule))
    assert "START_OVERDUE" in message and "至少需要一个颜色区间" in message


@pytest.mark.parametrize(
    ("header", "fault"),
    [
        ("version: 1\ntitle: 方案\n", "缺少字段「name」"),
        ("name: x\ntitle: 方案\n", "缺少字段「version」"),
        ("name: x\nversion: one\ntitle: 方案\n", "「version」应为整数"),
        ("name: x\nversion: 1\n", "缺少字段「title」"),
        ("name: x\nversion: 1\ntitle: 方案\nrulez: []\n", "未知字段「rulez」"),
        ("name: x\nversion: 1\ntitle: 方案\ncompleted_projects: [NOT_THERE]\n", "NOT_THERE"),
    ],
)
def test_bad_scheme_header(tmp_path: Path, header: str, fault: str) -> None:
    message = refused(write_scheme(tmp_path, GOOD_RULE, header=header))
    assert fault in message


def test_empty_rules(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("name: x\nversion: 1\ntitle: 方案\nrules: []\n", encoding="utf-8")
    assert "rules" in refused(path)


@pytest.mark.parametrize(
    ("when", "fault"),
    [("{month_since: 3}", "未知条件「month_since」"), ("{month_from: 13}", "1 到 12"), ("3", "应为映射")],
)
def test_bad_condition(tmp_path: Path, when: str, fault: str) -> None:
    rule = GOOD_RULE.replace("    yellow:", f"    when: {when}\n    yellow:")
    message = refused(write_scheme(tmp_path, rule))
    assert "START_OVERDUE" in message and fault in message


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nversion: 1\nrules: [\n  - code: A\n", encoding="utf-8")
    assert "YAML 语法错误" in refused(path)


def test_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    assert "映射" in refused(path)


def test_unknown_scheme_name_lists_the_shipped_ones() -> None:
    with pytest.raises(SchemeError) as caught:
        load_scheme("wuhan-2030", config_dir=CONFIG)
    message = str(caught.value)
    assert "wuhan-2030" in message and "jingzhou-2024" in message and "yinchuan-2025" in message


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    with pytest.raises(SchemeError) as caught:
        load_scheme(str(missing), config_dir=CONFIG)
    assert str(missing) in str(caught.value) and "jingzhou-2024" in str(caught.value)
