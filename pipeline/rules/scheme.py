"""A 红黄绿 scheme as data: load ``config/schemes/<name>.yaml`` into a typed, validated ``Scheme``.

Everything a city may change (thresholds, applicability, messages, which rules still judge a
completed project) lives in the YAML file; the metrics it may name live in ``metrics.METRICS``.
A bad file is refused at load with a ``SchemeError`` whose Chinese message names the file, the
rule and the fault. Thresholds are read exactly (YAML floats become ``Decimal`` via their text),
so a boundary such as 0.8 or 10 classifies exactly.

File format::

    name: jingzhou-2024
    version: 1
    title: 荆州市重大项目红黄绿挂牌（2024）
    completed_projects: [NOT_IN_STATS]     # rules that still apply once actual_completion is set
    rules:
      - code: START_OVERDUE
        name: 未按期开工
        metric: start_overdue_days         # a name from metrics.METRICS
        when: {month_from: 3}              # optional: D's month ≥ month_from, ≤ month_to
        yellow: {min: 1, max: 60}          # operators: min ≥, above >, max ≤, below <, equals
        red: {above: 60}
        message: "计划{planned_start}开工，截至{as_of}已逾期{overdue_days}天未开工"
"""

from __future__ import annotations

import difflib
import os
import string
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from pipeline.rules.metrics import METRICS, Color

BAND_COLORS: tuple[Color, ...] = (Color.YELLOW, Color.RED)
NUMERIC_OPERATORS = ("min", "above", "max", "below")
OPERATORS = (*NUMERIC_OPERATORS, "equals")
CONDITIONS = ("month_from", "month_to")
RULE_FIELDS = ("code", "name", "metric", "when", "message")
SCHEME_FIELDS = ("name", "version", "title", "completed_projects", "rules")
SCHEME_SUFFIXES = (".yaml", ".yml")


class SchemeError(ValueError):
    """A scheme file is missing or wrong; the message (Chinese) names the file, rule and fault."""


# --- the typed scheme ----------------------------------------------------------------------------

Threshold = Fraction | int


@dataclass(frozen=True)
class Band:
    """One colour's band of a rule: the values that give that colour."""

    color: Color
    min: Threshold | None = None  # value ≥ min
    above: Threshold | None = None  # value > above
    max: Threshold | None = None  # value ≤ max
    below: Threshold | None = None  # value < below
    equals: bool | None = None  # boolean metrics

    def interval(self) -> tuple[Threshold | None, bool, Threshold | None, bool]:
        """(low, low_closed, high, high_closed); None is unbounded."""
        low, low_closed = (self.min, True) if self.min is not None else (self.above, False)
        high, high_closed = (self.max, True) if self.max is not None else (self.below, False)
        return low, low_closed, high, high_closed

    def contains(self, value: Any) -> bool:
        if self.equals is not None:
            return bool(value) is self.equals
        if self.min is not None and not value >= self.min:
            return False
        if self.above is not None and not value > self.above:
            return False
        if self.max is not None and not value <= self.max:
            return False
        if self.below is not None and not value < self.below:
            return False
        return True

    def describe(self) -> str:
        if self.equals is not None:
            return f"equals {str(self.equals).lower()}"
        parts = [f"{op} {_decimal_text(getattr(self, op))}" for op in NUMERIC_OPERATORS if getattr(self, op) is not None]
        return "、".join(parts)


def _decimal_text(value: Threshold) -> str:
    """A threshold as the decimal the file wrote (3/5 → 0.6)."""
    if isinstance(value, int):
        return str(value)
    return str(Decimal(value.numerator) / Decimal(value.denominator))


@dataclass(frozen=True)
class Condition:
    """When a rule applies, as a function of D alone (empty: always)."""

    month_from: int | None = None
    month_to: int | None = None

    def holds(self, month: int) -> bool:
        if self.month_from is not None and month < self.month_from:
            return False
        if self.month_to is not None and month > self.month_to:
            return False
        return True


@dataclass(frozen=True)
class Rule:
    code: str
    name: str  # Chinese, e.g. 未按期开工
    metric: str
    bands: tuple[Band, ...]  # ordered worst colour first
    message: str  # str.format template over the metric's values
    when: Condition = Condition()

    def classify(self, value: Any) -> Color | None:
        for band in self.bands:
            if band.contains(value):
                return band.color
        return None


@dataclass(frozen=True)
class Scheme:
    name: str
    version: int
    title: str
    rules: tuple[Rule, ...]
    completed_projects: frozenset[str] = frozenset()  # rule codes that still judge completed projects
    source: Path | None = None

    def rule(self, code: str) -> Rule:
        for rule in self.rules:
            if rule.code == code:
                return rule
        raise KeyError(code)


# --- loading --------------------------------------------------------------------------------------


class _ExactLoader(yaml.SafeLoader):
    """SafeLoader that reads YAML floats as Decimal from their text, so 0.6 is exactly 0.6."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal | float:
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        return Decimal(text)
    except InvalidOperation:
        return loader.construct_yaml_float(node)  # .inf, .nan: refused later as thresholds


_ExactLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def list_schemes(config_dir: Path) -> list[str]:
    """Names of the schemes shipped in ``config_dir/schemes``."""
    folder = Path(config_dir) / "schemes"
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix in SCHEME_SUFFIXES and p.is_file())


def scheme_path(name_or_path: str, *, config_dir: Path) -> Path:
    """A path when it ends in .yaml/.yml or contains a path separator, else a shipped scheme's name."""
    separators = {os.sep, "/"} | ({os.altsep} if os.altsep else set())
    if name_or_path.endswith(SCHEME_SUFFIXES) or any(s in name_or_path for s in separators):
        return Path(name_or_path)
    return Path(config_dir) / "schemes" / f"{name_or_path}.yaml"


def load_scheme(name_or_path: str, *, config_dir: Path) -> Scheme:
    """Load and validate a scheme by shipped name (``jingzhou-2024``) or by file path."""
    path = scheme_path(name_or_path, config_dir=config_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        shipped = "、".join(list_schemes(config_dir)) or "（无）"
        raise SchemeError(f"找不到方案「{name_or_path}」（文件 {path} 不存在）；已有方案：{shipped}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemeError(f"方案文件 {path}：无法读取：{exc}") from exc
    return scheme_from_text(text, source=path)


def scheme_from_text(text: str, *, source: Path) -> Scheme:
    """Load and validate a scheme file's text (an upload, an edit); ``source`` names it in the
    messages, which are those a file in config/ gets at start-up."""
    try:
        document = yaml.load(text, Loader=_ExactLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SchemeError(f"方案文件 {source}：YAML 语法错误：{exc}") from exc
    return parse_scheme(document, source=source)


def parse_scheme(document: Any, *, source: Path | None = None) -> Scheme:
    """Validate an already-parsed YAML document into a ``Scheme``."""
    return _SchemeReader(source).read(document)


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.5)
    return f"，是否应为「{close[0]}」？" if close else ""


class _SchemeReader:
    def __init__(self, source: Path | None) -> None:
        self.where = f"方案文件 {source}" if source is not None else "方案"
        self.source = source

    def fail(self, fault: str, rule: str | None = None) -> SchemeError:
        if rule is None:
            return SchemeError(f"{self.where}：{fault}")
        return SchemeError(f"{self.where}：规则 {rule}：{fault}")

    def read(self, doc: Any) -> Scheme:
        if not isinstance(doc, Mapping):
            raise self.fail("内容应为一个映射（name、version、title、rules 等字段）")
        for key in doc:
            if key not in SCHEME_FIELDS:
                raise self.fail(f"未知字段「{key}」{_suggest(key, SCHEME_FIELDS)}")
        for key in ("name", "version", "title", "rules"):
            if key not in doc or doc[key] is None:
                raise self.fail(f"缺少字段「{key}」")
        name, title, version = doc["name"], doc["title"], doc["version"]
        if not isinstance(name, str) or not name.strip():
            raise self.fail("字段「name」应为非空文本")
        if not isinstance(title, str) or not title.strip():
            raise self.fail("字段「title」应为非空文本")
        if isinstance(version, bool) or not isinstance(version, int):
            raise self.fail(f"字段「version」应为整数，实为「{version}」")
        raw_rules = doc["rules"]
        if not isinstance(raw_rules, list) or not raw_rules:
            raise self.fail("字段「rules」应为非空列表")
        rules: list[Rule] = []
        seen: set[str] = set()
        for index, raw in enumerate(raw_rules, start=1):
            rule = self.rule(raw, index)
            if rule.code in seen:
                raise self.fail(f"规则代码重复「{rule.code}」", rule.code)
            seen.add(rule.code)
            rules.append(rule)
        completed = doc.get("completed_projects") or []
        if not isinstance(completed, list) or not all(isinstance(c, str) for c in completed):
            raise self.fail("字段「completed_projects」应为规则代码列表")
        for code in completed:
            if code not in seen:
                raise self.fail(f"completed_projects 中的规则「{code}」不存在{_suggest(code, seen)}")
        return Scheme(
            name=name.strip(), version=version, title=title.strip(), rules=tuple(rules),
            completed_projects=frozenset(completed), source=self.source,
        )

    def rule(self, raw: Any, index: int) -> Rule:
        label = f"第{index}条"
        if not isinstance(raw, Mapping):
            raise self.fail("规则应为一个映射", label)
        code = raw.get("code")
        if not isinstance(code, str) or not code.strip():
            raise self.fail("缺少字段「code」或其不是文本", label)
        code = code.strip()
        for key in ("name", "metric", "message"):
            if key not in raw or raw[key] is None:
                raise self.fail(f"缺少字段「{key}」", code)
            if not isinstance(raw[key], str) or not raw[key].strip():
                raise self.fail(f"字段「{key}」应为非空文本", code)
        metric_name = raw["metric"].strip()
        metric = METRICS.get(metric_name)
        if metric is None:
            raise self.fail(f"未知指标「{metric_name}」{_suggest(metric_name, METRICS)}", code)
        bands: list[Band] = []
        for key, value in raw.items():
            if key in RULE_FIELDS:
                continue
            color = next((c for c in BAND_COLORS if c.value == key), None)
            if color is None:
                if isinstance(value, (Mapping, list)) or key == "green":
                    allowed = "、".join(c.value for c in BAND_COLORS)
                    raise self.fail(f"未知颜色「{key}」（可用颜色：{allowed}）", code)
                raise self.fail(f"未知字段「{key}」{_suggest(key, (*RULE_FIELDS, 'yellow', 'red'))}", code)
            bands.append(self.band(color, value, code, metric.kind))
        if not bands:
            raise self.fail("至少需要一个颜色区间（yellow 或 red）", code)
        bands.sort(key=lambda b: -b.color.rank)
        self.check_overlap(bands, code)
        message = raw["message"]
        self.check_message(message, metric.values, metric_name, code)
        return Rule(
            code=code, name=raw["name"].strip(), metric=metric_name, bands=tuple(bands), message=message,
            when=self.condition(raw.get("when"), code),
        )

    def band(self, color: Color, raw: Any, code: str, kind: str) -> Band:
        if isinstance(raw, list):  # shorthand [low, high]: both ends closed
            if len(raw) != 2:
                raise self.fail(f"{color.value} 区间简写应为 [下限, 上限]", code)
            raw = {"min": raw[0], "max": raw[1]}
        if not isinstance(raw, Mapping):
            raise self.fail(f"{color.value} 区间应为映射，如 {{min: 1, max: 60}}", code)
        if not raw:
            raise self.fail(f"{color.value} 区间为空，至少需要一个运算符", code)
        for op in raw:
            if op not in OPERATORS:
                allowed = "、".join(OPERATORS)
                raise self.fail(f"{color.value} 区间中有未知运算符「{op}」{_suggest(op, OPERATORS)}（可用：{allowed}）", code)
        if kind == "boolean":
            if set(raw) != {"equals"}:
                raise self.fail(f"{color.value} 区间：布尔指标只能使用 equals", code)
            if not isinstance(raw["equals"], bool):
                raise self.fail(f"{color.value} 区间：equals 的取值应为 true 或 false，实为「{raw['equals']}」", code)
            return Band(color, equals=raw["equals"])
        if "equals" in raw:
            raise self.fail(f"{color.value} 区间：equals 只能用于布尔指标，数值指标请用 min、above、max、below", code)
        if "min" in raw and "above" in raw:
            raise self.fail(f"{color.value} 区间：min 与 above 不能同时使用", code)
        if "max" in raw and "below" in raw:
            raise self.fail(f"{color.value} 区间：max 与 below 不能同时使用", code)
        values = {op: self.threshold(raw[op], color, op, code) for op in raw}
        band = Band(color, **values)
        low, low_closed, high, high_closed = band.interval()
        if low is not None and high is not None and (low > high or (low == high and not (low_closed and high_closed))):
            raise self.fail(f"{color.value} 区间为空（{band.describe()}），下限大于上限", code)
        return band

    def threshold(self, raw: Any, color: Color, op: str, code: str) -> Threshold:
        bad = self.fail(f"{color.value} 区间中 {op} 的阈值「{raw}」不是有效数字", code)
        if isinstance(raw, bool):
            raise bad
        if isinstance(raw, int):
            return raw
        if isinstance(raw, (Decimal, str)):
            try:
                exact = Decimal(raw.strip() if isinstance(raw, str) else raw)
            except InvalidOperation:
                raise bad from None
            if not exact.is_finite():
                raise bad
            value = Fraction(exact)
            return int(value) if value.denominator == 1 else value
        raise bad

    def check_overlap(self, bands: list[Band], code: str) -> None:
        for i, first in enumerate(bands):
            for second in bands[i + 1 :]:
                if _overlaps(first, second):
                    raise self.fail(
                        f"{first.color.value} 区间（{first.describe()}）与 {second.color.value} 区间"
                        f"（{second.describe()}）重叠",
                        code,
                    )

    def check_message(self, message: str, allowed: tuple[str, ...], metric: str, code: str) -> None:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(message) if f is not None]
        except ValueError as exc:
            raise self.fail(f"消息模板格式错误（花括号不匹配）：{exc}", code) from None
        for field in fields:
            if field not in allowed:
                names = "、".join(allowed)
                raise self.fail(
                    f"消息模板中的占位符「{{{field}}}」不是指标 {metric} 的取值{_suggest(field, allowed)}（可用：{names}）",
                    code,
                )

    def condition(self, raw: Any, code: str) -> Condition:
        if raw is None:
            return Condition()
        if not isinstance(raw, Mapping):
            raise self.fail("字段「when」应为映射，如 {month_from: 3}", code)
        values: dict[str, int] = {}
        for key, value in raw.items():
            if key not in CONDITIONS:
                raise self.fail(f"when 中有未知条件「{key}」{_suggest(key, CONDITIONS)}（可用：{'、'.join(CONDITIONS)}）", code)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 12:
                raise self.fail(f"when 中 {key} 应为 1 到 12 的整数，实为「{value}」", code)
            values[key] = value
        condition = Condition(**values)
        if condition.month_from is not None and condition.month_to is not None and condition.month_from > condition.month_to:
            raise self.fail("when 中 month_from 大于 month_to，规则永不适用", code)
        return condition


def _overlaps(a: Band, b: Band) -> bool:
    """Whether two bands share a value (intervals with open/closed ends; booleans by equality)."""
    if a.equals is not None or b.equals is not None:
        return a.equals == b.equals
    a_low, a_low_closed, a_high, a_high_closed = a.interval()
    b_low, b_low_closed, b_high, b_high_closed = b.interval()
    # the intersection's lower end: the larger low (closed only if every low equal to it is closed)
    if a_low is None:
        low, low_closed = b_low, b_low_closed
    elif b_low is None or a_low > b_low:
        low, low_closed = a_low, a_low_closed
    elif b_low > a_low:
        low, low_closed = b_low, b_low_closed
    else:
        low, low_closed = a_low, a_low_closed and b_low_closed
    if a_high is None:
        high, high_closed = b_high, b_high_closed
    elif b_high is None or a_high < b_high:
        high, high_closed = a_high, a_high_closed
    elif b_high < a_high:
        high, high_closed = b_high, b_high_closed
    else:
        high, high_closed = a_high, a_high_closed and b_high_closed
    if low is None or high is None:
        return True
    return low < high or (low == high and low_closed and high_closed)


__all__ = [
    "BAND_COLORS", "OPERATORS", "Band", "Condition", "Rule", "Scheme", "SchemeError", "list_schemes",
    "load_scheme", "parse_scheme", "scheme_path",
]
