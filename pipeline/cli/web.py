"""`pipeline serve`: the web workspace (API and pages) under uvicorn."""

from __future__ import annotations

import errno
import socket

import typer

from pipeline.cli.app import app, console, fail, runtime
from pipeline.cli.reserve import ensure_database
from pipeline.cli.parent import end_with_parent
from pipeline.errors import SettingsError


def port_taken(host: str, port: int) -> str | None:
    """Why the web server could not listen on host:port (in Chinese), or None when it can. The
    probe binds as uvicorn does (SO_REUSEADDR), so a port merely in TIME_WAIT counts as free."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        return f"无法解析监听地址 {host}：{exc.strerror}"
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except PermissionError:
            return f"没有权限监听端口 {port}（1024 以下的端口需要管理员权限），请用 --port 换一个端口"
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return (f"端口 {port} 已被占用（{host}:{port}），网页工作台无法启动：请用 --port 换一个端口，"
                        "或先停止占用该端口的程序（可能是另一个正在运行的 pipeline run / pipeline serve）")
            return f"无法监听 {host}:{port}：{exc.strerror}"
    return None


def refuse_taken_port(host: str, port: int) -> None:
    """Stop the command, saying why, when the web server could not listen on host:port."""
    reason = port_taken(host, port)
    if reason:
        raise fail(reason, 1)


@app.command("serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="监听地址"),
    port: int = typer.Option(8000, "--port", help="监听端口"),
) -> None:
    """启动网页工作台与接口服务（/api/…、/health、/metrics）。"""
    import uvicorn

    from pipeline.web import create_app

    end_with_parent()
    rt = runtime()
    rt.check_config()
    refuse_taken_port(host, port)
    ensure_database(rt)
    try:
        web = create_app(rt)
    except SettingsError as exc:
        raise fail(str(exc), 3) from exc
    console.print(f"网页工作台：http://{host}:{port}/  接口文档：http://{host}:{port}/api/docs", highlight=False)
    uvicorn.run(web, host=host, port=port, proxy_headers=False, log_level="info")
