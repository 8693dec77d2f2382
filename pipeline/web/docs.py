"""The OpenAPI document and its Swagger UI (served from the vendored copy), behind the sign-in."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from pipeline.accounts import Principal
from pipeline.web.security import current_principal

router = APIRouter(include_in_schema=False, dependencies=[Depends(current_principal)])


@router.get("/api/openapi.json")
def openapi_document(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/api/docs")
def docs_page(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    return request.app.state.templates.TemplateResponse(request, "docs.html", {"principal": principal})
