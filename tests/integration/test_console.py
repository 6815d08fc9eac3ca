"""The console's routes without a browser: ``/`` sends a browser to ``/console/``, the page and its files are
served from the package with the security headers (a CSP without inline script), every file the page loads
exists, nothing of it is in the OpenAPI document; and the stats extension the charts use (``breakdown=true``:
top users and the series per severity) against counts made in Python."""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta

from app.console.routes import STATIC_DIR
from tests.conftest import ApiClient, make_tenant


async def test_root_redirects_to_the_console_and_the_page_carries_security_headers(client: ApiClient) -> None:
    root = await client.get("/")
    assert root.status_code == 302 and root.headers["location"] == "/console/"
    for path in ("/console", "/console/"):
        page = await client.get(path)
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'" and "unsafe" not in csp
        assert directives["frame-ancestors"] == "'none'" and directives["default-src"] == "'none'"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "<script>" not in page.text and not re.search(r"\son[a-z]+=", page.text)  # no inline script


async def test_every_module_the_page_loads_is_served_and_nothing_else(client: ApiClient) -> None:
    page = (await client.get("/console/")).text
    refs = re.findall(r'(?:src|href)="(/console/[^"]+)"', page)
    assert "/console/js/app.js" in refs and "/console/app.css" in refs
    seen: set[str] = set()
    queue = list(refs)
    while queue:  # follow the ES module imports from app.js
        ref = queue.pop()
        if ref in seen:
            continue
        seen.add(ref)
        response = await client.get(ref)
        assert response.status_code == 200, ref
        assert response.headers["content-security-policy"]
        if ref.endswith(".js"):
            assert response.headers["content-type"].startswith("text/javascript")
            base = ref.rsplit("/", 1)[0]
            for spec in re.findall(r'from "(\.{1,2}/[^"]+)"', response.text):
                parts = (base + "/" + spec).split("/")
                resolved: list[str] = []
                for part in parts:
                    if part == "..":
                        resolved.pop()
                    elif part != ".":
                        resolved.append(part)
                queue.append("/".join(resolved))
    shipped = {f"/console/{p.relative_to(STATIC_DIR).as_posix()}" for p in STATIC_DIR.rglob("*.js")}
    assert shipped <= seen, shipped - seen  # every shipped module is reachable from the page
    for missing in ("/console/nope.js", "/console/../settings.py", "/console/js/../../routes.py"):
        assert (await client.get(missing)).status_code == 404
    assert "http" not in "".join((STATIC_DIR / p).read_text() for p in ("index.html", "app.css"))  # no CDN


async def test_console_routes_stay_out_of_the_schema(client: ApiClient) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]
    assert "/" not in paths
    assert not [p for p in paths if p.startswith("/console")]


async def test_stats_breakdown_counts_users_and_severity_per_bucket(client: ApiClient) -> None:
    tenant = await make_tenant(client)
    base = datetime(2025, 3, 10, tzinfo=UTC)
    events = [
        {
            "action": ("CREATE", "UPDATE", "DELETE")[i % 3],
            "resource_type": "doc",
            "severity": ("INFO", "WARNING", "ERROR", "CRITICAL")[i % 4 if i % 5 else 0],
            "timestamp": (base + timedelta(hours=i % 7, minutes=i)).isoformat(),
            **({"user_id": f"user-{i % 13}"} if i % 6 else {}),
        }
        for i in range(60)
    ]
    response = await client.post("/api/v1/logs/bulk", json=events, headers=tenant.user)
    assert response.status_code == 201, response.text
    window = {"start_time": base.isoformat(), "end_time": (base + timedelta(hours=23)).isoformat(), "interval": "hour"}

    plain = await client.get("/api/v1/logs/stats", params=window, headers=tenant.auditor)
    assert plain.status_code == 200 and "by_user" not in plain.json() and "series_by_severity" not in plain.json()

    response = await client.get("/api/v1/logs/stats", params={**window, "breakdown": "true"}, headers=tenant.auditor)
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["total"] == 60 and stats["by_action"] == plain.json()["by_action"]
    claims = tenant.user["Authorization"].split(".")[1]
    caller = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["sub"]
    users = Counter(e.get("user_id", caller) for e in events)  # the actor defaults to the caller
    expected_users = sorted(users.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert list(stats["by_user"].items()) == expected_users
    buckets = [datetime.fromisoformat(p["bucket"]) for p in stats["series"]]
    assert len(buckets) == 24
    expected: dict[str, list[int]] = {}
    for e in events:
        ts = datetime.fromisoformat(e["timestamp"]).replace(minute=0)
        expected.setdefault(e["severity"], [0] * 24)[buckets.index(ts)] += 1
    assert stats["series_by_severity"] == dict(sorted(expected.items()))
    for i, point in enumerate(stats["series"]):
        assert point["count"] == sum(series[i] for series in stats["series_by_severity"].values())

    bad = await client.get("/api/v1/logs/stats", params={"breakdown": "maybe"}, headers=tenant.auditor)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "breakdown"
