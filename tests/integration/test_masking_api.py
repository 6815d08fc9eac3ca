"""Issue 14 finding 4 through the API: every form that once came back verbatim is masked in what
``GET /logs/{id}`` returns, in what PostgreSQL stores, and in what ``q`` can find."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import ApiClient, Database, make_tenant
from tests.integration.ingest_helpers import decrypt, raw_row

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
# One distinct word per form, so a search for it can only find that form.
WORDS = {
    "ruby": "rubysecretone",
    "cli": "clisecrettwo",
    "xml": "xmlsecretthree",
    "pct": "pctsecretfour",
    "nbsp": "nbspsecretfive",
    "escaped": "escsecretsix",
    "db_pass": "dbpasssecret",
    "userPass": "userpasssecret",
    "pw": "pwsecretvalue",
    "passcode": "passcodesecret",
    "encryption_key": "encsecretkeyvalue",
    "pair": "pairsecretvalue1",
}
CARD = "4111111111111111"
PHONE = "0912345678"


def _event() -> dict[str, Any]:
    message = " ".join(
        [
            "mysql import started;",
            f'params {{"password"=>"{WORDS["ruby"]}"}}',
            f"cmd mysql --password {WORDS['cli']}",
            f"<Password>{WORDS['xml']}</Password>",
            f"body %22password%22%3A%22{WORDS['pct']}%22",
            f"hdr Authorization%3A%20Bearer%20{JWT}",
            f"password\u00a0\uff1d\u00a0{WORDS['nbsp']}",
            f'raw {{\\\\\\"password\\\\\\": \\\\\\"{WORDS["escaped"]}\\\\\\"}}',
            f"ref PAN-{CARD} call {PHONE}",
        ]
    )
    return {
        "action": "UPDATE",
        "resource_type": "database",
        "resource_id": "db-1",
        "message": message,
        "metadata": {
            **{key: WORDS[key] for key in ("db_pass", "userPass", "pw", "passcode", "encryption_key")},
            "card": int(CARD),
            "contact": PHONE,
            "password_changed": True,
            "token_count": 3,
            "resource_key": "rk-7",
        },
        "after_state": {"headers": [["Authorization", f"Bearer {WORDS['pair']}"], ["Accept", "text/html"]]},
    }


async def test_finding_4_forms_masked_in_api_storage_and_search(client: ApiClient, database: Database) -> None:
    t = await make_tenant(client)
    created = await client.post("/api/v1/logs", json=_event(), headers=t.user)
    assert created.status_code == 201, created.text
    event_id = created.json()["id"]

    got = await client.get(f"/api/v1/logs/{event_id}", headers=t.auditor)
    assert got.status_code == 200, got.text
    body = got.json()
    text = json.dumps(body, ensure_ascii=False)
    for secret in (*WORDS.values(), JWT, CARD, PHONE):
        assert secret not in text, secret
    # Legitimate audit data stays as it was.
    assert body["metadata"]["password_changed"] is True and body["metadata"]["token_count"] == 3
    assert body["metadata"]["resource_key"] == "rk-7"
    assert body["metadata"]["card"] == "[REDACTED]" and body["metadata"]["contact"] == "********78"
    assert body["after_state"]["headers"] == [["Authorization", "[REDACTED]"], ["Accept", "text/html"]]
    assert body["message"].startswith("mysql import started;")

    row = await raw_row(database, event_id)
    assert row is not None
    stored = json.dumps(await decrypt(client, t.id, row["payload"], event_id, "payload"), ensure_ascii=False)
    for secret in (*WORDS.values(), JWT, CARD, PHONE):
        assert secret not in row["message"], secret
        assert secret not in stored, secret
        assert secret.lower() not in row["search_text"], secret

    async def found(q: str) -> bool:
        page = await client.get("/api/v1/logs", params={"q": q, "limit": 1000}, headers=t.auditor)
        assert page.status_code == 200, page.text
        return any(item["id"] == event_id for item in page.json()["items"])

    assert await found("mysql")  # the search itself works on this event
    for secret in (*WORDS.values(), CARD, PHONE):
        assert not await found(secret), secret
