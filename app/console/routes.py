"""``/console``: the web console's page and assets, and ``/`` sending a browser there.

The console is plain HTML, CSS and ES modules in ``app/console/static`` (no build step, nothing from a CDN):
what it shows comes from the public API with the signed-in user's token, so these routes are public and serve
only files. They are outside the OpenAPI document (they are not API operations) and outside the rate limits,
and every answer carries the console's security headers: a Content-Security-Policy allowing scripts, styles
and connections from this origin only (no inline script), no framing, no referrer, no MIME sniffing.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Final

from litestar import Response, Router, get
from litestar.params import FromPath
from litestar.response import Redirect

from app.web.errors import NotFound

__all__ = ["CONSOLE_PATH", "SECURITY_HEADERS", "console", "root_redirect"]

CONSOLE_PATH: Final = "/console"
STATIC_DIR: Final = Path(__file__).parent / "static"
_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cache-Control": "no-cache",
}


def _load() -> dict[str, tuple[bytes, str]]:
    """Every servable file under ``static``, by its path relative to it (read once: they are small)."""
    files: dict[str, tuple[bytes, str]] = {}
    for path in sorted(STATIC_DIR.rglob("*")):
        media_type = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        if path.is_file() and path.suffix in _TYPES and media_type:
            files[path.relative_to(STATIC_DIR).as_posix()] = (path.read_bytes(), media_type)
    return files


_FILES: Final = _load()


def _file(name: str) -> Response[bytes]:
    found = _FILES.get(name)
    if found is None:
        raise NotFound("console file")
    body, media_type = found
    return Response(body, media_type=media_type, headers=SECURITY_HEADERS)


@get("/", include_in_schema=False, opt={"public": True})
async def _page() -> Response[bytes]:
    return _file("index.html")


@get("/{asset:path}", include_in_schema=False, opt={"public": True})
async def _asset(asset: FromPath[str]) -> Response[bytes]:
    return _file(asset.lstrip("/"))


console: Final = Router(path=CONSOLE_PATH, route_handlers=[_page, _asset])
"""``/console`` and its files; ``app.routes`` mounts it."""


@get("/", include_in_schema=False, opt={"public": True})
async def root_redirect() -> Redirect:
    """``/`` is the console's front door."""
    return Redirect(f"{CONSOLE_PATH}/", status_code=302)
