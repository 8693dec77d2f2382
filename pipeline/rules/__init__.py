"""The 红黄绿 rules (SPEC §4): schemes as data (``scheme``), what can be measured (``metrics``),
evaluation of project states into flags (``engine``) and evaluation of template rows (``replay``)."""

from pipeline.rules.engine import Flag, Reason, evaluate, evaluate_many
from pipeline.rules.metrics import METRICS, Color, Metric, previous_month_end, time_progress, worst
from pipeline.rules.replay import evaluate_rows
from pipeline.rules.scheme import Band, Condition, Rule, Scheme, SchemeError, list_schemes, load_scheme

__all__ = [
    "METRICS", "Band", "Color", "Condition", "Flag", "Metric", "Reason", "Rule", "Scheme", "SchemeError",
    "evaluate", "evaluate_many", "evaluate_rows", "list_schemes", "load_scheme", "previous_month_end",
    "time_progress", "worst",
]
