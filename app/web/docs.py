"""Swagger UI at ``/docs`` over ``/schema/openapi.json``, working on a machine without internet.

Its scripts, stylesheet and icons are served from the installed ``swagger-ui-bundle`` package under
``/docs/assets/`` (public, outside the OpenAPI document, cacheable), never from a CDN; ``/schema`` (Litestar's
render plugin) answers the same page. Only the files a page may load are served.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Final

from litestar import MediaType, Request, Response, Router, get
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import FromPath
from swagger_ui_bundle import swagger_ui_path

from app.web.errors import NotFound

__all__ = ["ASSETS_PATH", "swagger_render_plugin", "swagger_ui"]

ASSETS_PATH: Final = "/docs/assets"
_ASSETS: Final = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
_FAVICON: Final = f'<link rel="icon" type="image/png" href="{ASSETS_PATH}/favicon-32x32.png" sizes="32x32">'

# validatorUrl: null, or Swagger UI asks validator.swagger.io to check the document (and shows its badge).
_PAGE: Final = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Audit Log API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
{_FAVICON}
<link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "/schema/openapi.json", dom_id: "#ui", deepLinking: true, validatorUrl: null}});</script>
</body></html>"""


@functools.cache
def _asset(name: str) -> bytes:
    return (Path(str(swagger_ui_path)) / name).read_bytes()


@get("/", media_type=MediaType.HTML, include_in_schema=False, opt={"public": True})
async def _page() -> str:
    return _PAGE


@get("/assets/{name:str}", include_in_schema=False, opt={"public": True})
async def _static(name: FromPath[str]) -> Response[bytes]:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFound("documentation asset")
    return Response(_asset(name), media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})


swagger_ui: Final = Router(path="/docs", route_handlers=[_page, _static])
"""``/docs`` and its assets; ``app.routes`` mounts it."""


class _LocalSwaggerRenderPlugin(SwaggerRenderPlugin):
    """``/schema``'s Swagger UI is the ``/docs`` page: Litestar's own template is written for Swagger UI 5
    (``SwaggerUIBundle.SwaggerUIStandalonePreset``), which the packaged 4.x bundle does not define."""

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return _PAGE.encode()


def swagger_render_plugin() -> SwaggerRenderPlugin:
    """The render plugin of ``/schema``: the ``/docs`` page, on the local assets instead of Litestar's CDN."""
    return _LocalSwaggerRenderPlugin(
        js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=_FAVICON,
        path="/",
    )
