"""`pipeline evaluate` (SPEC §7): flags from template files, no database, no server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from pipeline.cli.app import app, err_console, fail, runtime
from pipeline.cli.reserve import parse_date_option


@app.command("evaluate")
def evaluate_cmd(
    files: list[Path] = typer.Argument(..., help="模板文件（xlsx、csv 或以英文字段名为键的 jsonl）"),
    as_of: str = typer.Option(..., "--as-of", help="评估日期 YYYY-MM-DD"),
    scheme: str = typer.Option(None, "--scheme", help="方案名称（jingzhou-2024、yinchuan-2025）或方案文件路径"),
) -> None:
    """按方案评估文件中每个项目在指定日期的挂牌，每个项目输出一行 JSON（按项目代码排序）。"""
    from pipeline.ingest.frame import frame_to_rows
    from pipeline.ingest.parse import FileRejected, ImportLimits, parse_file
    from pipeline.ingest.template import UpdateRow
    from pipeline.rules import SchemeError, load_scheme
    from pipeline.rules.replay import evaluate_rows

    rt = runtime()
    d = parse_date_option(as_of)
    assert d is not None
    try:
        chosen = load_scheme(scheme or rt.settings.scheme, config_dir=rt.settings.config_dir)
    except SchemeError as exc:
        raise fail(str(exc), 2) from exc
    rows: list[UpdateRow] = []
    for path in files:
        try:
            parsed = parse_file(path, reference=rt.reference, today=rt.clock.today(),
                                max_bytes=rt.settings.max_upload_bytes, limits=ImportLimits.from_settings(rt.settings))
        except FileRejected as exc:
            err_console.print(str(exc), highlight=False, soft_wrap=True)
            continue
        except FileNotFoundError:
            err_console.print(f"文件不存在：{path}", highlight=False)
            continue
        for err in parsed.errors:
            err_console.print(f"{path.name} {err.describe()}", highlight=False, soft_wrap=True)
        rows.extend(frame_to_rows(parsed.updates))
    results = evaluate_rows(rows, as_of=d, scheme=chosen)
    out = sys.stdout
    for result in results:
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
    out.flush()
    if not results:
        raise typer.Exit(2)
