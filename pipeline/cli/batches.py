"""`pipeline batches`: the import batches, and retrying one that failed."""

from __future__ import annotations

import json

import typer
from pipeline.cli.app import app, console, runtime
from pipeline.cli.reserve import ensure_database, hand_on

batches_app = typer.Typer(help="导入批次：查看各批次的处理情况，重试处理失败的批次。", no_args_is_help=False)
app.add_typer(batches_app, name="batches")


@batches_app.callback(invoke_without_command=True)
def batches_list(
    ctx: typer.Context,
    failed: bool = typer.Option(False, "--failed", help="只看处理失败的批次"),
    limit: int = typer.Option(50, help="最多显示多少个"),
    as_json: bool = typer.Option(False, "--json", help="每行输出一个 JSON 对象"),
) -> None:
    """列出导入批次（最新的在前）。"""
    if ctx.invoked_subcommand is not None:  # before the imports: `batches retry --help` stays light
        return
    from rich.table import Table

    from pipeline.db import session_scope
    from pipeline.ingest.batches import STATUS_NAMES, list_batches
    from pipeline.states import BatchStatus

    rt = runtime()
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        rows = list_batches(session, status=BatchStatus.FAILED if failed else None, limit=limit)
        if as_json:
            for b in rows:
                print(json.dumps({"id": b.id, "source": b.source, "filename": b.filename, "status": b.status,
                                  "accepted": b.accepted_rows, "rejected": b.rejected_rows, "applied": b.applied_rows,
                                  "attempts": b.attempts, "error": b.error}, ensure_ascii=False))
            return
        table = Table(title=f"导入批次（{'处理失败' if failed else '全部'}，{len(rows)} 个）")
        for head in ("编号", "文件", "状态", "接收", "拒收", "处理次数", "错误"):
            table.add_column(head)
        for b in rows:
            table.add_row(str(b.id), b.filename or b.source, STATUS_NAMES.get(BatchStatus(b.status), b.status),
                          str(b.accepted_rows), str(b.rejected_rows), str(b.attempts), b.error or "")
    console.print(table)


@batches_app.command("retry")
def batches_retry(batch_id: int = typer.Argument(..., help="批次编号")) -> None:
    """重试一个处理失败的批次：重新计数并交给处理进程。"""
    from pipeline.db import session_scope
    from pipeline.ingest.batches import retry_batch

    rt = runtime()
    ensure_database(rt)
    with session_scope(rt.session_factory) as session:
        retry_batch(session, batch_id)
    hand_on(rt, [batch_id])
    console.print(f"批次 {batch_id} 已重新排队处理。", highlight=False)
