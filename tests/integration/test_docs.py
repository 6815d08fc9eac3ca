"""``/docs`` works offline: Swagger UI's files come from the installed ``swagger-ui-bundle`` package, served
by the API itself, and no page of the documentation refers to another host."""

from __future__ import annotations

import re
from pathlib import Path

from swagger_ui_bundle import swagger_ui_path

from tests.conftest import ApiClient

_REFERENCE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")


def _references(html: str) -> list[str]:
    return _REFERENCE.findall(html)


async def test_docs_page_loads_only_local_assets_and_they_are_served(client: ApiClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "//" not in html.replace("</", "").replace("/*", ""), "no absolute or protocol-relative URL"
    assert "cdn" not in html.lower()
    refs = _references(html)
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(refs)
    assert "validatorUrl: null" in html  # else Swagger UI calls validator.swagger.io
    for ref in refs:
        assert ref.startswith("/docs/assets/"), ref
        asset = await client.get(ref)  # no token: public
        assert asset.status_code == 200, ref
        assert asset.content == (Path(str(swagger_ui_path)) / ref.rsplit("/", 1)[1]).read_bytes()
    script = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.headers["content-type"].startswith("text/javascript")
    css = await client.get("/docs/assets/swagger-ui.css")
    assert css.headers["content-type"].startswith("text/css")


async def test_only_the_listed_assets_are_served(client: ApiClient) -> None:
    for name in ("index.html", "swagger-ui.js.map", "..%2F__init__.py", "nope.js"):
        response = await client.get(f"/docs/assets/{name}")
        assert response.status_code == 404, name
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_schema_ui_uses_the_local_assets_and_docs_routes_stay_out_of_the_schema(client: ApiClient) -> None:
    page = await client.get("/schema/")
    assert page.status_code == 200
    assert page.text == (await client.get("/docs")).text  # the same offline page, not Litestar's CDN template
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/docs")]
