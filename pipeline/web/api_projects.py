"""Read API: projects (filtered, sorted, paginated), one project, rates, reviews."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from pipeline.accounts import Principal
from pipeline.db import session_scope
from pipeline.meta import evaluation_date
from pipeline.rates import GROUPINGS, _percent  # noqa: PLC2701  (the one percentage format)
from pipeline.rules.metrics import time_progress
from pipeline.web.errors import WebError
from pipeline.trends import trend
from pipeline.web.figures import upcoming_reviews
from pipeline.web.flag_source import as_of_query, source_as_of
from pipeline.web.queries import COLORS, ProjectFilters, ProjectRow, list_projects, project_by_code, project_detail
from pipeline.web.schemas import (
    MAX_PAGE,
    AckOut,
    ErrorAnswer,
    GroupRatesOut,
    MonthHistoryEntry,
    OverrideOut,
    ProjectDetail,
    ProjectPage,
    ProjectSummary,
    RatesAnswer,
    ReviewOut,
    TimelineEvent,
    TrendPointOut,
    UpdateOut,
)
from pipeline.web.security import check_project, current_principal, require_office, runtime_of

ANSWERS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorAnswer, "description": "未登录或令牌无效"},
    403: {"model": ErrorAnswer, "description": "无权访问"},
    422: {"model": ErrorAnswer, "description": "参数未通过校验（注明行与字段）"},
}
router = APIRouter(prefix="/api", tags=["查询"], dependencies=[Depends(current_principal)], responses=ANSWERS)


def num(value: Decimal | int | float | None) -> float | None:
    return None if value is None else float(value)


def summary(r: ProjectRow) -> ProjectSummary:
    return ProjectSummary(
        code=r.code, name=r.name, county=r.county, industry=r.industry, nature=r.nature, leader=r.leader,
        unit=r.unit, flag=r.color, computed_flag=r.computed_color, overridden=r.overridden,
        total_investment=num(r.total_investment), annual_plan=num(r.annual_plan), ytd_completed=num(r.ytd_completed),
        as_of=r.as_of, reasons=r.reasons,  # type: ignore[arg-type]
    )


def filters_from(
    request: Request,
    color: str | None = Query(None, description="red / yellow / green（或 红/黄/绿）"),
    county: str | None = Query(None, description="县市区"),
    list_name: str | None = Query(None, alias="list", description="所属清单"),
    leader: str | None = Query(None, description="包保领导姓名"),
    industry: str | None = Query(None, description="行业"),
    q: str | None = Query(None, max_length=100, description="项目代码前缀，或项目名称、包保领导、责任单位、存在问题中的关键字"),
    sort: str = Query("code", description="code|name|county|industry|flag|investment|plan|ytd|as_of|leader"),
    desc: bool = Query(False, description="倒序"),
    page: int = Query(1, ge=1, le=MAX_PAGE),
    per_page: int = Query(50, ge=1, le=200),
    as_of: date | None = Depends(as_of_query),
) -> ProjectFilters:
    colour = {"红": "red", "黄": "yellow", "绿": "green"}.get((color or "").strip(), (color or "").strip().lower())
    if colour and colour not in COLORS:
        raise WebError(422, f"参数 color 无效：{color}（应为 red/yellow/green 或 红/黄/绿）",
                       [{"row": None, "field": "color", "message": "取值应为 red/yellow/green"}])
    return ProjectFilters(color=colour or None, county=county, list_name=list_name, leader=leader, industry=industry,
                          q=q, sort=sort, desc=desc, page=page, per_page=per_page, as_of=as_of,
                          county_order=runtime_of(request).reference.order_for("county"))


@router.get("/projects", response_model=ProjectPage, summary="项目列表（筛选、排序、分页）")
def get_projects(request: Request, f: ProjectFilters = Depends(filters_from),
                 principal: Principal = Depends(current_principal)) -> ProjectPage:
    rt = runtime_of(request)
    with session_scope(rt.read_session_factory) as session:
        _, source = source_as_of(session, rt, f.as_of)
        total, rows = list_projects(session, f, principal, source)
    f = f.normalised()
    return ProjectPage(total=total, page=f.page, per_page=f.per_page, items=[summary(r) for r in rows])


@router.get("/projects/{code}", response_model=ProjectDetail, summary="单个项目：字段、挂牌原因、月报、挂牌时间线、确认")
def get_project(code: str, request: Request, principal: Principal = Depends(current_principal)) -> ProjectDetail:
    rt = runtime_of(request)
    with session_scope(rt.read_session_factory) as session:
        project = project_by_code(session, code)
        if project is None:
            raise WebError(404, f"项目代码不存在：{code}")
        check_project(principal, project)
        d = project_detail(session, project, list_order=rt.reference.lists)
        flag, state, o = d["flag"], d["state"], d["override"]
        state_out = None
        if state is not None:
            state_out = {k: (num(v) if isinstance(v, Decimal) else v) for k, v in (
                ("as_of", state.as_of), ("annual_plan", state.annual_plan), ("planned_start", state.planned_start),
                ("planned_completion", state.planned_completion), ("actual_start", state.actual_start),
                ("actual_completion", state.actual_completion), ("stats_included_on", state.stats_included_on),
                ("cumulative_completed", state.cumulative_completed), ("ytd_completed", state.ytd_completed),
                ("needs_coordination", state.needs_coordination), ("problems", state.problems))}
        return ProjectDetail(
            code=project.code, name=project.name, county=project.county, industry=project.industry,
            nature=project.nature, leader=d["leader"].name if d["leader"] else None,
            unit=d["unit"].name if d["unit"] else None, flag=flag.effective_color if flag else None,
            computed_flag=flag.computed_color if flag else None, overridden=bool(flag and flag.override_id),
            total_investment=num(project.total_investment), annual_plan=num(state.annual_plan) if state else None,
            ytd_completed=num(state.ytd_completed) if state else None, as_of=state.as_of if state else None,
            reasons=list(flag.reasons) if flag else [], lists=d["lists"], scheme=flag.scheme if flag else None,
            scheme_version=flag.scheme_version if flag else None, flag_as_of=flag.as_of if flag else None,
            override=OverrideOut.model_validate(o, from_attributes=True) if o else None, state=state_out,
            updates=[UpdateOut.model_validate(u, from_attributes=True) for u in d["updates"]],
            timeline=[TimelineEvent(**{k: v for k, v in e.items() if k in TimelineEvent.model_fields})
                      for e in d["timeline"]],
            history=[MonthHistoryEntry.model_validate(m, from_attributes=True) for m in d["history"]],
            acknowledgements=[AckOut.model_validate(a, from_attributes=True) for a in d["acks"]],
        )


@router.get("/rates", response_model=RatesAnswer, summary="开工率、竣工率、入统率与投资完成率（按组）")
def get_rates(
    request: Request,
    as_of: date | None = Query(None, description="统计日期，默认为系统评估日期"),
    by: str = Query("city", description="city|county|list|leader|industry"),
    principal: Principal = Depends(current_principal),
) -> RatesAnswer:
    if by not in GROUPINGS:
        raise WebError(422, f"参数 by 无效：{by}（应为 {'|'.join(GROUPINGS)}）",
                       [{"row": None, "field": "by", "message": "取值不在允许范围内"}])
    rt = runtime_of(request)
    with session_scope(rt.read_session_factory) as session:
        d = as_of or evaluation_date(session, rt.clock)
        groups = request.app.state.rates.rates(session, as_of=d, by=by, principal=principal).groups
    return RatesAnswer(
        as_of=d, by=by, time_progress=_percent(time_progress(d)),
        groups=[GroupRatesOut(
            **g.to_json(), projects=g.projects,
            display={"start_rate": g.start_rate.display(), "start_rate_annual": g.start_rate_annual.display(),
                     "completion_rate": g.completion_rate.display(),
                     "completion_rate_annual": g.completion_rate_annual.display(),
                     "stats_rate": g.stats_rate.display(), "investment": g.investment.display()},
        ) for g in groups],
    )


@router.get("/trend", response_model=list[TrendPointOut], summary="月末趋势：各组红黄绿牌数与三率（办公室）")
def get_trend(
    request: Request,
    by: str = Query("city", description="city|county|list|leader|industry"),
    group: str | None = Query(None, description="只看一个组（如县市区名称、包保领导姓名）"),
    months: int = Query(12, ge=1, le=240, description="最近多少个月末"),
    principal: Principal = Depends(current_principal),
) -> list[TrendPointOut]:
    require_office(principal)
    if by not in GROUPINGS:
        raise WebError(422, f"参数 by 无效：{by}（应为 {'|'.join(GROUPINGS)}）",
                       [{"row": None, "field": "by", "message": "取值不在允许范围内"}])
    rt = runtime_of(request)
    with session_scope(rt.session_factory) as session:
        points = trend(session, group_by=by, group=group, months=months, now=rt.clock.now())
    return [TrendPointOut(month_end=p.month_end, red=p.red, yellow=p.yellow, green=p.green, **p.rates.to_json())
            for p in points]


@router.get("/reviews", response_model=list[ReviewOut], summary="接下来的双月述职（日期、剩余天数、提醒发送时间）")
def get_reviews(request: Request, count: int = Query(6, ge=1, le=24)) -> list[ReviewOut]:
    rt = runtime_of(request)
    with session_scope(rt.read_session_factory) as session:
        today = evaluation_date(session, rt.clock)
    found = upcoming_reviews(rt.review_calendar, today, count=count)
    return [ReviewOut(date=r.date, days_left=r.days_left, digest_at=r.digest_at) for r in found]
