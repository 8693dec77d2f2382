"""What the alerts say: leader and office digests, red notices, their workbooks (SPEC §6).

Data goes in through the ordinary ingest path (record → apply → re-flag) on a SQLite runtime
whose clock is pinned to 2024-12-31; the content is read back from the stored flags.
"""

from __future__ import annotations

import io
from collections import Counter
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import func, select

from pipeline.alerts.content import (
    ContentNotFound,
    leader_digest,
    office_digest,
    red_notice,
)
from pipeline.alerts.render import HTML_PROJECT_LIMIT
from pipeline.alerts.workbook import safe_cell
from pipeline.db import session_scope
from pipeline.tasks.dispatch import apply_inline
from pipeline.models import Leader, Project, ProjectFlag
from pipeline.runtime import Runtime, set_runtime
from tests.conftest import make_runtime
from tests.factories import ACTOR, code, row
from tests.test_ingest_db import apply, record

D = date(2024, 12, 31)
REVIEW = date(2025, 1, 8)  # a review after the flags' date, so "days left" is defined
PREVIOUS = date(2024, 10, 31)
LINK = "https://xm.jzfgw.gov.cn/"
RED_NAME = "<script>alert(1)</script>"


@pytest.fixture
def rt(tmp_path: Path):
    runtime = make_runtime(tmp_path, as_of=D)
    yield runtime
    runtime.dispose()
    set_runtime(None)


def on_pace(n: int, **fields):
    """A green row: on pace, started, in the statistics, reported at D."""
    return row(n, as_of=D, ytd_completed=Decimal("12000"), **fields)


def load(rt: Runtime) -> None:
    """张三: one red (turned red since October), one yellow (new), one green; 李四: all green."""
    apply(rt, record(rt, [
        row(1, as_of=PREVIOUS, ytd_completed=Decimal("10000"), leader="张三", unit="荆州区发改局"),
        row(3, as_of=PREVIOUS, ytd_completed=Decimal("10000"), leader="张三", unit="荆州区交通局", name=RED_NAME),
    ]))
    apply(rt, record(rt, [
        on_pace(1, leader="张三", unit="荆州区发改局", name="城北快速路"),
        row(2, as_of=D, ytd_completed=Decimal("12000"), needs_coordination=True, problems="征地拆迁未完成",
            leader="张三", unit="荆州区住建局", name="=1+1", county="沙市区"),
        row(3, as_of=D, ytd_completed=Decimal("3000"), leader="张三", unit="荆州区交通局", name=RED_NAME),
        on_pace(4, leader="李四", unit="公安县发改局", county="公安县", name="公安县物流园"),
    ]))


def leader_id(rt: Runtime, name: str) -> int:
    with session_scope(rt.session_factory) as s:
        return s.scalar(select(Leader.id).where(Leader.name == name))


def digest_of(rt: Runtime, name: str, previous: date | None = PREVIOUS):
    with session_scope(rt.session_factory) as s:
        return leader_digest(s, leader_id=leader_id(rt, name), review_date=REVIEW, as_of=D, previous_review=previous,
                             scheme=rt.scheme, link_base=LINK)


def sheet_rows(content: bytes, sheet: str) -> list[tuple]:
    book = openpyxl.load_workbook(io.BytesIO(content))
    return [tuple(r) for r in book[sheet].iter_rows(values_only=True)]


def test_the_data_is_what_the_tests_assume(rt: Runtime) -> None:
    load(rt)
    with session_scope(rt.session_factory) as s:
        colors = dict(s.execute(select(Project.code, ProjectFlag.effective_color)
                                .join(ProjectFlag, ProjectFlag.project_id == Project.id)).tuples().all())
    assert colors == {code(1): "green", code(2): "yellow", code(3): "red", code(4): "green"}


def test_leader_digest_counts_order_reasons_and_rates(rt: Runtime) -> None:
    load(rt)
    m = digest_of(rt, "张三")
    assert m.subject == "【双月述职提醒】张三同志：2025年1月8日述职，您包保的项目红牌1个、黄牌1个"
    # red before yellow, the green project not listed, in text and HTML
    assert m.text.index(code(3)) < m.text.index(code(2))
    assert code(1) not in m.text.split("【挂牌变化】")[0]
    assert m.html.index(code(3)) < m.html.index(code(2))
    assert "距述职还有8天" in m.text
    # the reasons with their numbers
    for body in (m.text, m.html):
        assert "投资进度滞后" in body and "本年完成投资3000万元" in body and "序时进度目标12000万元" in body
        assert "的25%" in body
        assert "问题待协调" in body and "征地拆迁未完成" in body
        assert "荆州区交通局" in body and "沙市区" in body
    # the three rates of the portfolio, with 投资完成率 beside 序时进度
    assert "投资完成率：75.0%（本年完成27,000万元 / 年度计划36,000万元），序时进度：100.0%" in m.text
    assert "入统率：100.0%（3/3）" in m.text
    assert "开工率：—" in m.text  # no planned start in 2024: empty denominator
    assert f"{LINK.rstrip('/')}/projects/{code(3)}" in m.html
    assert m.payload["title"] == m.subject and m.payload["markdown"] == m.markdown
    assert (m.payload["red"], m.payload["yellow"], m.payload["green"]) == (1, 1, 1)
    assert "**红牌**" in m.markdown and "投资完成率 75.0%" in m.markdown


def test_changes_since_the_previous_review(rt: Runtime) -> None:
    load(rt)
    m = digest_of(rt, "张三")
    changes = m.text.split("【挂牌变化】")[1].split("【包保项目三率】")[0]
    assert "与上次述职（2024年10月31日）相比" in changes
    assert f"【新增红牌】{RED_NAME}（{code(3)}，荆州区）：绿牌 → 红牌" in changes
    assert f"【新增黄牌】=1+1（{code(2)}，沙市区）：绿牌 → 黄牌" in changes
    assert code(1) not in changes  # green then, green now
    assert changes.index(code(3)) < changes.index(code(2))
    rows = sheet_rows(m.attachments[0].content, "变化情况")
    assert rows[0] == ("项目代码", "项目名称", "县市区", "上次述职时", "当前", "变化")
    assert rows[1:] == [(code(3), RED_NAME, "荆州区", "绿牌", "红牌", "新增红牌"),
                        (code(2), "'=1+1", "沙市区", "绿牌", "黄牌", "新增黄牌")]
    # no previous review: nothing to compare
    first = digest_of(rt, "张三", previous=None)
    assert "无上次述职可比较" in first.text and "新增红牌" not in first.text


def test_a_long_list_of_changes_is_cut_in_the_body_and_whole_in_the_workbook(rt: Runtime) -> None:
    """A leader answering for hundreds of projects (at province scale) reads the first changes in
    the email, text and HTML alike, and where the rest are; the workbook has every one."""
    n = HTML_PROJECT_LIMIT + 5
    apply(rt, record(rt, [row(i, as_of=D, ytd_completed=Decimal("3000"), leader="赵六") for i in range(1, n + 1)]))
    m = digest_of(rt, "赵六")
    codes = [code(i) for i in range(1, n + 1)]  # each new red (green at the previous review: no report then)
    text_changes = m.text.split("【挂牌变化】")[1].split("【包保项目三率】")[0]
    html_changes = m.html.split("挂牌变化")[1].split("包保项目三率")[0]
    for body in (text_changes, html_changes):
        assert [c for c in codes if c in body] == codes[:HTML_PROJECT_LIMIT]
    assert "另有5项变化未在正文列出，全部变化见附件“变化情况”表。" in text_changes
    assert "另有 5 项变化未在正文列出，全部变化见附件“变化情况”表。" in html_changes
    assert [r[0] for r in sheet_rows(m.attachments[0].content, "变化情况")[1:]] == codes


def test_a_yellow_turning_red_is_called_so(rt: Runtime) -> None:
    apply(rt, record(rt, [row(5, as_of=PREVIOUS, needs_coordination=True, problems="用地指标",
                              ytd_completed=Decimal("10000"), leader="王五")]))
    apply(rt, record(rt, [row(5, as_of=D, ytd_completed=Decimal("1000"), leader="王五")]))
    m = digest_of(rt, "王五")
    assert f"【黄转红】测试项目5（{code(5)}，荆州区）：黄牌 → 红牌" in m.text


def test_an_all_green_leader_gets_the_short_form(rt: Runtime) -> None:
    load(rt)
    m = digest_of(rt, "李四")
    assert m.subject == "【双月述职提醒】李四同志：2025年1月8日述职，您包保的1个项目均为绿牌"
    assert "您包保的1个项目均为绿牌" in m.text and "均为绿牌" in m.html
    assert "红牌项目" not in m.text and "黄牌项目" not in m.text
    assert "投资完成率：100.0%" in m.text and "入统率：100.0%（1/1）" in m.text
    assert sheet_rows(m.attachments[0].content, "红黄牌项目") == [
        ("项目代码", "项目名称", "县市区", "责任单位", "挂牌", "评估日期", "原因")]


def test_html_escapes_a_malicious_name_and_text_keeps_it(rt: Runtime) -> None:
    load(rt)
    m = digest_of(rt, "张三")
    assert "<script>" not in m.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in m.html
    assert RED_NAME in m.text
    with session_scope(rt.session_factory) as s:
        pid = s.scalar(select(Project.id).where(Project.code == code(3)))
        notice = red_notice(s, project_id=pid, link_base=LINK)
    assert "<script>" not in notice.html and "&lt;script&gt;" in notice.html
    assert notice.subject == f"【红牌提醒】{RED_NAME}（{code(3)}）"
    assert r"\<script\>" in notice.markdown  # robots' markdown: specials escaped


def test_the_workbook_holds_the_rows_and_neutralises_formulas(rt: Runtime) -> None:
    load(rt)
    m = digest_of(rt, "张三")
    [attachment] = m.attachments
    assert attachment.filename == "双月述职-张三-2025-01-08.xlsx"
    book = openpyxl.load_workbook(io.BytesIO(attachment.content))
    assert book.sheetnames == ["红黄牌项目", "三率", "变化情况"]
    rows = sheet_rows(attachment.content, "红黄牌项目")
    assert rows[0] == ("项目代码", "项目名称", "县市区", "责任单位", "挂牌", "评估日期", "原因")
    assert [r[:5] for r in rows[1:]] == [
        (code(3), RED_NAME, "荆州区", "荆州区交通局", "红牌"),
        (code(2), "'=1+1", "沙市区", "荆州区住建局", "黄牌"),
    ]
    assert [r[5] for r in rows[1:]] == [datetime(2024, 12, 31), datetime(2024, 12, 31)]  # a date, not text
    assert "本年完成投资3000万元" in rows[1][6] and "征地拆迁未完成" in rows[2][6]
    cell = book["红黄牌项目"]["B3"]
    assert cell.data_type == "s" and cell.value == "'=1+1"  # text, not a formula
    assert book["红黄牌项目"]["F2"].number_format == "yyyy-mm-dd"
    # numbers as numbers: rates as fractions shown as percentages beside their counts, money in 万元
    rates = sheet_rows(attachment.content, "三率")
    assert rates[0][:5] == ("分组", "项目数", "开工率", "已开工", "应开工")
    line = dict(zip(rates[0], rates[1]))
    assert line["分组"] == "张三" and line["项目数"] == 3
    assert line["开工率"] is None and (line["已开工"], line["应开工"]) == (0, 0)  # empty denominator: blank
    assert line["入统率"] == 1.0 and (line["已入统"], line["应入统"]) == (3, 3)
    assert line["本年完成投资（万元）"] == 27000 and line["年度计划投资（万元）"] == 36000
    assert line["投资完成率"] == 0.75 and line["序时进度"] == 1.0
    sheet = book["三率"]
    header = [c.value for c in sheet[1]]
    assert sheet.cell(2, header.index("投资完成率") + 1).number_format == "0.0%"
    assert sheet.cell(2, header.index("本年完成投资（万元）") + 1).number_format == "#,##0.00"
    for name in book.sheetnames:  # every sheet: a frozen header with an autofilter
        assert book[name].freeze_panes == "A2" and book[name].auto_filter.ref, name


@pytest.mark.parametrize("value", ["=HYPERLINK(\"http://x\",\"y\")", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"])
def test_every_formula_trigger_is_neutralised(value: str) -> None:
    assert safe_cell(value) == "'" + value
    assert safe_cell("城北快速路") == "城北快速路" and safe_cell(3) == 3


def test_an_override_shows_beside_the_computed_colour(rt: Runtime) -> None:
    from pipeline.overrides import set_override

    load(rt)
    with session_scope(rt.session_factory) as s:
        set_override(s, code=code(1), color="red", reason="安全生产事故", set_by="投资科", expires_on=date(2025, 3, 31),
                     reflag=rt.reflag_projects, clock=rt.clock, actor=ACTOR)
    m = digest_of(rt, "张三")
    assert m.subject.endswith("红牌2个、黄牌1个")
    assert "人工调整为红牌（计算结果：绿牌），理由：安全生产事故；调整人：投资科；有效期至2025-03-31" in m.text
    rows = sheet_rows(m.attachments[0].content, "红黄牌项目")
    assert (code(1), "红牌（人工调整，计算为绿牌）") in [(r[0], r[4]) for r in rows]


def test_an_acknowledged_red_says_so_in_the_digest(rt: Runtime) -> None:
    from pipeline.overrides import acknowledge

    load(rt)
    with session_scope(rt.session_factory) as s:
        acknowledge(s, code=code(3), note="已约谈", by="张三", clock=rt.clock, actor=ACTOR)
    m = digest_of(rt, "张三")
    rows = sheet_rows(m.attachments[0].content, "红黄牌项目")
    assert (code(3), "红牌（已确认）") in [(r[0], r[4]) for r in rows]
    assert "已确认" in m.html


def test_office_digest_counts_by_county_match_the_stored_flags(rt: Runtime) -> None:
    load(rt)
    with session_scope(rt.session_factory) as s:
        stored = Counter(s.execute(select(Project.county, ProjectFlag.effective_color)
                                   .join(ProjectFlag, ProjectFlag.project_id == Project.id)).tuples().all())
        m = office_digest(s, review_date=REVIEW, as_of=D, previous_review=PREVIOUS, scheme=rt.scheme, link_base=LINK,
                          county_order=rt.reference.order_for("county"))
    assert m.subject == "【双月述职汇总】2025年1月8日述职：全市4个项目，红牌1个、黄牌1个、绿牌2个"
    book = openpyxl.load_workbook(io.BytesIO(m.attachments[0].content))
    assert book.sheetnames == ["分县市区挂牌", "三率", "红牌", "黄牌", "包保领导挂牌", "变化情况"]
    rows = sheet_rows(m.attachments[0].content, "分县市区挂牌")
    assert rows[0] == ("县市区", "红牌", "黄牌", "绿牌", "合计")
    by_county = {r[0]: r[1:4] for r in rows[1:]}
    counties = {county for county, _ in stored}
    assert set(by_county) == counties | {"全市"}
    for county in counties:
        assert by_county[county] == tuple(stored[(county, c)] for c in ("red", "yellow", "green")), county
    assert by_county["全市"] == (1, 1, 2)
    assert "荆州区：1 / 0 / 1 / 2" in m.text and "沙市区：0 / 1 / 0 / 1" in m.text
    # leaders' counts, the red list, the rates for the city and by county
    assert sheet_rows(m.attachments[0].content, "包保领导挂牌")[1:] == [("张三", 1, 1, 1, 3), ("李四", 0, 0, 1, 1)]
    red = sheet_rows(m.attachments[0].content, "红牌")
    assert [r[0] for r in red[1:]] == [code(3)] and red[1][4] == "张三"
    yellow = sheet_rows(m.attachments[0].content, "黄牌")
    assert [r[0] for r in yellow[1:]] == [code(2)] and yellow[1][5] == "黄牌"
    # counties in their configured order (沙市区, 荆州区, 公安县, …), not by code point
    assert [r[0] for r in sheet_rows(m.attachments[0].content, "三率")[1:]] == ["全市", "沙市区", "荆州区", "公安县"]
    assert [r[0] for r in rows[1:]] == ["沙市区", "荆州区", "公安县", "全市"]
    assert m.text.index("沙市区：") < m.text.index("荆州区：") < m.text.index("公安县：")
    assert "新增红牌1个" in m.text and "&lt;script&gt;" in m.html
    assert m.attachments[0].filename == "双月述职-全市汇总-2025-01-08.xlsx"
    assert "述职" in m.subject


def test_red_notice_has_the_link_reasons_leader_and_unit(rt: Runtime) -> None:
    load(rt)
    with session_scope(rt.session_factory) as s:
        pid = s.scalar(select(Project.id).where(Project.code == code(3)))
        m = red_notice(s, project_id=pid, link_base=LINK, scheme=rt.scheme)
    link = f"https://xm.jzfgw.gov.cn/projects/{code(3)}"
    for body in (m.text, m.html, m.markdown):
        assert link in body
        assert "本年完成投资3000万元" in body
    assert "包保领导：张三" in m.text and "责任单位：荆州区交通局" in m.text
    assert "投资进度滞后：" in m.text
    assert f'<a href="{link}">' in m.html
    assert "述职" not in m.subject and m.attachments == ()
    assert m.payload["project_code"] == code(3) and m.payload["color"] == "red" and m.payload["link"] == link
    assert m.payload["reasons"][0]["code"] == "BEHIND_PACE"
    assert f"[查看项目详情]({link})" in m.markdown


def test_templates_are_read_once_not_looked_up_on_disk_at_every_message(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first evaluation renders thousands of notices: after the first, rendering one asks the
    file system nothing (the templates ship with the package; checking each file's time at every
    message was about 4 stat calls a notice)."""
    import os

    load(rt)
    with session_scope(rt.session_factory) as s:
        pid = s.scalar(select(Project.id).where(Project.code == code(3)))
        first = red_notice(s, project_id=pid, link_base=LINK, scheme=rt.scheme)

        def no_disk(*_: object) -> None:
            raise AssertionError("a template file looked up on disk while rendering")

        monkeypatch.setattr(os.path, "getmtime", no_disk)
        monkeypatch.setattr(os.path, "isfile", no_disk)
        again = red_notice(s, project_id=pid, link_base=LINK, scheme=rt.scheme)
    assert (again.text, again.html, again.markdown) == (first.text, first.html, first.markdown)


def test_unknown_leader_or_project_is_refused(rt: Runtime) -> None:
    with session_scope(rt.session_factory) as s:
        with pytest.raises(ContentNotFound):
            red_notice(s, project_id=999, link_base=LINK)
        with pytest.raises(ContentNotFound):
            leader_digest(s, leader_id=999, review_date=REVIEW, as_of=D, previous_review=None, scheme=rt.scheme,
                          link_base=LINK)


def test_office_digest_over_the_demo_reserve_attaches_every_red_project(tmp_path: Path) -> None:
    from pipeline.demo.seed import seed_demo

    runtime = make_runtime(tmp_path, as_of=D)
    try:
        with session_scope(runtime.session_factory) as s:
            batch_ids = seed_demo(s, seed=2024, reference=runtime.reference, clock=runtime.clock)
        apply_inline(runtime, batch_ids)
        with session_scope(runtime.session_factory) as s:
            red = set(s.scalars(select(Project.code).join(ProjectFlag, ProjectFlag.project_id == Project.id)
                                .where(ProjectFlag.effective_color == "red")))
            total = s.scalar(select(func.count()).select_from(ProjectFlag))
            m = office_digest(s, review_date=date(2024, 12, 27), as_of=D, previous_review=date(2024, 10, 31),
                              scheme=runtime.scheme, link_base=LINK)
        assert total == 1463 and red
        sheet = sheet_rows(m.attachments[0].content, "红牌")
        assert [r[0] for r in sheet[1:]] == sorted(red)  # every red project, once, by code
        # the body lists the first of them, as the HTML part does, and says where the rest are
        listed = m.text.split("三、红牌项目")[1].split("四、包保领导挂牌")[0]
        assert [c for c in sorted(red) if c in listed] == sorted(red)[:HTML_PROJECT_LIMIT]
        assert f"另有{len(red) - HTML_PROJECT_LIMIT}个项目未在正文列出，全部红牌项目见附件“红牌”表。" in listed
        assert m.payload["red"] == len(red) and m.payload["projects"] == 1463
        assert len(m.markdown.encode()) <= 4096  # fits a WeCom robot message whole
        with session_scope(runtime.session_factory) as s:
            for lid in s.scalars(select(Leader.id)):
                digest = leader_digest(s, leader_id=lid, review_date=date(2024, 12, 27), as_of=D,
                                       previous_review=date(2024, 10, 31), scheme=runtime.scheme, link_base=LINK)
                assert len(digest.markdown.encode()) <= 4096, digest.subject
        county_rows = sheet_rows(m.attachments[0].content, "分县市区挂牌")
        assert county_rows[-1][0] == "全市" and county_rows[-1][4] == 1463
        assert sum(r[1] for r in county_rows[1:-1]) == len(red)
    finally:
        runtime.dispose()
        set_runtime(None)
