"""Render gathered content into messages: Jinja2 templates (Chinese) for text, HTML and robot markdown.

HTML templates (``*.html.j2``) are autoescaped; every template runs with ``StrictUndefined``, so
a misspelt field fails loudly instead of rendering blank. Subjects are built here, on one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from pipeline.alerts.channels.base import Attachment
from pipeline.alerts.workbook import leader_workbook, office_workbook

if TYPE_CHECKING:
    from pipeline.alerts.content import LeaderDigest, OfficeDigest, RedNotice


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    text: str
    html: str
    markdown: str
    attachments: tuple[Attachment, ...]
    payload: dict[str, Any]  # for webhooks: title, markdown and the kind's own fields


MD_PROJECT_LIMIT = 6  # projects listed in a digest's robot markdown (WeCom caps a message at 4096 bytes)
# Projects listed in an email's HTML body (the workbook lists them all): keeps a digest under 100 KB,
# short enough to read on a phone.
HTML_PROJECT_LIMIT = 40
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")


def zh_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def one_line(text: str) -> str:
    """Whitespace (newlines included) collapsed, so a name cannot break a subject or a markdown line."""
    return " ".join(str(text).split())


def md_escape(text: str) -> str:
    """Markdown-safe inline text: one line, with the characters markdown acts on backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", one_line(text))


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("pipeline.alerts", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,  # the templates ship with the package: read once, never looked at again
    )
    env.filters.update(zh_date=zh_date, one_line=one_line, md=md_escape)
    return env


_BLANK_RUNS = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")


def tidy(text: str) -> str:
    """At most one blank line in a row, no trailing spaces, one final newline (text and markdown)."""
    lines = "\n".join(line.rstrip() for line in text.splitlines())
    return _BLANK_RUNS.sub("\n\n", lines).strip() + "\n"


def _render(kind: str, **context: Any) -> tuple[str, str, str]:
    env = environment()
    context.setdefault("project_limit", HTML_PROJECT_LIMIT)
    text, html, markdown = (env.get_template(f"{kind}.{fmt}.j2").render(**context) for fmt in ("txt", "html", "md"))
    return tidy(text), html, tidy(markdown)


def leader_digest_subject(d: LeaderDigest) -> str:
    head = f"【双月述职提醒】{one_line(d.leader)}同志：{zh_date(d.review_date)}述职，"
    if d.all_green:
        return head + f"您包保的{d.counts.total}个项目均为绿牌"
    return head + f"您包保的项目红牌{d.counts.red}个、黄牌{d.counts.yellow}个"


def office_digest_subject(d: OfficeDigest) -> str:
    c = d.city
    return (f"【双月述职汇总】{zh_date(d.review_date)}述职：全市{c.total}个项目，"
            f"红牌{c.red}个、黄牌{c.yellow}个、绿牌{c.green}个")


def red_notice_subject(n: RedNotice) -> str:
    return f"【红牌提醒】{one_line(n.project.name)}（{n.project.code}）"


def render_leader_digest(d: LeaderDigest) -> RenderedMessage:
    subject = leader_digest_subject(d)
    text, html, markdown = _render("leader_digest", d=d, subject=subject, md_limit=MD_PROJECT_LIMIT)
    payload = {
        "title": subject, "markdown": markdown, "kind": "leader_digest", "review_date": d.review_date.isoformat(),
        "leader": d.leader, "red": d.counts.red, "yellow": d.counts.yellow, "green": d.counts.green,
        "link": d.page_link,
    }
    return RenderedMessage(subject, text, html, markdown, (leader_workbook(d),), payload)


def render_office_digest(d: OfficeDigest) -> RenderedMessage:
    subject = office_digest_subject(d)
    text, html, markdown = _render("office_digest", d=d, subject=subject)
    payload = {
        "title": subject, "markdown": markdown, "kind": "office_digest", "review_date": d.review_date.isoformat(),
        "red": d.city.red, "yellow": d.city.yellow, "green": d.city.green, "projects": d.city.total,
        "link": d.page_link,
    }
    return RenderedMessage(subject, text, html, markdown, (office_workbook(d),), payload)


def render_red_notice(n: RedNotice) -> RenderedMessage:
    subject = red_notice_subject(n)
    text, html, markdown = _render("red_notice", n=n, p=n.project, subject=subject)
    p = n.project
    payload = {
        "title": subject, "markdown": markdown, "kind": "red_notice", "project_code": p.code, "project_name": p.name,
        "color": p.color, "computed_color": p.computed_color, "county": p.county, "leader": p.leader, "unit": p.unit,
        "link": p.link, "reasons": [{"code": r.code, "color": r.color, "message": r.message} for r in p.reasons],
    }
    return RenderedMessage(subject, text, html, markdown, (), payload)


__all__ = [
    "RenderedMessage", "environment", "leader_digest_subject", "md_escape", "office_digest_subject", "one_line",
    "red_notice_subject", "render_leader_digest", "render_office_digest", "render_red_notice", "zh_date",
]
