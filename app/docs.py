"""Swagger UI at ``/docs`` over the OpenAPI 3.1 document at ``/schema/openapi.json``."""

from __future__ import annotations

from litestar import MediaType, get

__all__ = ["swagger_ui"]

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Audit Log API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/schema/openapi.json", dom_id: "#ui"});</script>
</body></html>"""


@get("/docs", media_type=MediaType.HTML, include_in_schema=False, opt={"public": True})
async def swagger_ui() -> str:
    return _PAGE
