"""The web workspace: FastAPI routers and server-rendered pages over the same domain calls as the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from pipeline.runtime import Runtime


def create_app(runtime: Runtime) -> FastAPI:
    from pipeline.web.app import create_app as build

    return build(runtime)


__all__ = ["create_app"]
