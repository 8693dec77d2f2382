"""`pipeline serve`: the web workspace (API and pages) under uvicorn."""

from __future__ import annotations

import typer

from pipeline.cli.app import app, console, fail, runtime
from pipeline.cli.reserve import ensure_database
from pipeline.errors import SettingsError


@app.command("serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="监听地址"),
    port: int = typer.Option(8000, "--port", help="监听端口"),
) -> None:
    """启动网页工作台与接口服务（/api/…、/health、/metrics）。"""
    import uvicorn

    from pipeline.web import create_app

    rt = runtime()
    ensure_database(rt)
    try:
        web = create_app(rt)
    except SettingsError as exc:
        raise fail(str(exc), 3) from exc
    console.print(f"网页工作台：http://{host}:{port}/  接口文档：http://{host}:{port}/api/docs", highlight=False)
    uvicorn.run(web, host=host, port=port, proxy_headers=False, log_level="info")
