"""The 红黄绿 rules (SPEC §4): schemes as data (``scheme``), what can be measured (``metrics``,
measured over columns in ``measures``), the scheme compiled into column expressions and evaluated
over a chunk of projects (``columnar``, reading a facts frame built by ``frame``), flags as objects
over it (``engine``) and evaluation of template rows (``replay``)."""

from pipeline.rules.columnar import CompiledScheme, compile_scheme
from pipeline.rules.engine import Flag, Reason, evaluate, evaluate_many
from pipeline.rules.frame import FACT_DTYPES, facts_frame
from pipeline.rules.metrics import METRICS, Color, Metric, previous_month_end, time_progress, worst
from pipeline.rules.replay import evaluate_rows
from pipeline.rules.scheme import Band, Condition, Rule, Scheme, SchemeError, list_schemes, load_scheme

__all__ = [
    "FACT_DTYPES", "METRICS", "Band", "Color", "CompiledScheme", "Condition", "Flag", "Metric", "Reason", "Rule",
    "Scheme", "SchemeError", "compile_scheme", "evaluate", "evaluate_many", "evaluate_rows", "facts_frame",
    "list_schemes", "load_scheme", "previous_month_end", "time_progress", "worst",
]
