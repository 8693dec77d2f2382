"""Security headers on every response: pages, the API, static files, redirects and errors alike.

``SecurityHeaders`` is a plain ASGI middleware that the app puts outside everything else, Starlette's
``ServerErrorMiddleware`` included, so that the 500 answering an unhandled exception carries them
too. Strict-Transport-Security is sent when the request came over https: TLS on our own socket, or
``X-Forwarded-Proto: https`` from a trusted proxy (``PIPELINE_TRUSTED_PROXIES``); never over plain
http, where browsers ignore it anyway and a misconfigured proxy would otherwise lock users out.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.web.clients import Networks, is_https

# Every asset is local: our CSS and scripts, the vendored ECharts and Swagger UI. Inline styles stay
# allowed (ECharts and Swagger UI set style attributes); scripts only from our own files.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
       "frame-ancestors 'none'")
PERMISSIONS = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), display-capture=()"
HSTS = "max-age=31536000"
FIXED = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
    ("Permissions-Policy", PERMISSIONS),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, proxies: Networks) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        peer = scope["client"][0] if scope.get("client") else None
        https = is_https(scope.get("scheme", "http"), peer, Headers(scope=scope), self.proxies)
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in FIXED:
                    headers.setdefault(name, value)
                if https:
                    headers.setdefault("Strict-Transport-Security", HSTS)
                if not static:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)
