"""Alert rules of a tenant: create, list, read, change, delete, and the delivery log (the routes' service).

The webhook secret is generated here, returned once, and stored encrypted with the tenant's data key (bound
to the rule's id), so a database copy does not let anyone sign webhooks. A rule's ``match`` is validated by
the same parser as ``GET /logs`` query parameters (``match_filters``), so a rule means exactly what the same
filters mean on a read. URLs pass ``app.outbound.url_guard`` on every write.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.schemas import AlertCreate, AlertCreated, AlertDeliveryOut, AlertMatch, AlertOut, AlertPatch
from app.logs.query import LogFilters, parse_filters
from app.outbound.signing import new_secret
from app.outbound.url_guard import UnsafeURL, check_url
from app.web.errors import ApiError, NotFound
from db.keyring import KeyringStore
from db.models import AlertDelivery, AlertRule
from db.repository import AlertDeliveryRepository, AlertRuleRepository

__all__ = [
    "SECRET_FIELD",
    "create_rule",
    "delete_rule",
    "get_rule",
    "list_deliveries",
    "list_rules",
    "match_filters",
    "update_rule",
]

SECRET_FIELD = "alert_secret"  # noqa: S105 - the name of an encryption context, not a secret
MAX_RULES_PER_TENANT = 100


def match_filters(match: dict[str, Any]) -> LogFilters:
    """A rule's ``match`` as the ``GET /logs`` filter set it stands for (``ApiError`` 422 naming each bad field)."""
    params: dict[str, list[str]] = {}
    for name in ("action", "resource_type", "user_id", "q"):
        value = match.get(name)
        if value is not None:
            params[name] = [str(value)]
    if match.get("severity"):
        params["severity"] = [str(s) for s in match["severity"]]
    errors: list[dict[str, Any]] = []
    filters = parse_filters(params, errors)
    if errors:
        for error in errors:
            error["field"] = f"match.{error['field']}"
        raise ApiError(422, "invalid alert match", errors=errors)
    return filters


async def _check_url(url: str, allow_private: bool) -> None:
    try:
        await check_url(url, allow_private=allow_private)
    except UnsafeURL as exc:
        raise ApiError(422, f"webhook_url {exc}", errors=[{"field": "webhook_url", "message": str(exc)}]) from None


def _out(rule: AlertRule) -> AlertOut:
    return AlertOut(
        id=rule.id,
        name=rule.name,
        match=rule.match,
        threshold=rule.threshold,
        window_seconds=rule.window_seconds,
        cooldown_seconds=rule.cooldown_seconds,
        webhook_url=rule.webhook_url,
        enabled=rule.enabled,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
        last_fired_at=rule.last_fired_at,
    )


async def create_rule(
    session: AsyncSession, keyrings: KeyringStore, data: AlertCreate, *, actor: str, allow_private: bool
) -> AlertCreated:
    match = msgspec.to_builtins(data.match)
    match_filters(match)
    await _check_url(data.webhook_url, allow_private)
    repo = AlertRuleRepository(session=session)
    if await repo.count() >= MAX_RULES_PER_TENANT:
        raise ApiError(409, f"a tenant may have at most {MAX_RULES_PER_TENANT} alert rules")
    rule_id = uuid.uuid4()
    secret = new_secret()
    keyring = await keyrings.get(session, repo.tenant_id)
    rule = await repo.add(
        AlertRule(
            id=rule_id,
            name=data.name,
            match=match,
            threshold=data.threshold,
            window_seconds=data.window_seconds,
            cooldown_seconds=data.cooldown_seconds,
            webhook_url=data.webhook_url,
            secret=keyring.encrypt(secret.encode(), event_id=rule_id, field=SECRET_FIELD),
            enabled=data.enabled,
            created_by=actor,
        ),
        auto_refresh=True,
    )
    return AlertCreated(**msgspec.structs.asdict(_out(rule)), secret=secret)


async def list_rules(session: AsyncSession) -> list[AlertOut]:
    rows = await AlertRuleRepository(session=session).list(order_by=[(AlertRule.created_at, False)])
    return [_out(r) for r in rows]


async def _get(session: AsyncSession, rule_id: uuid.UUID) -> AlertRule:
    rule = await AlertRuleRepository(session=session).get_one_or_none(AlertRule.id == rule_id)
    if rule is None:
        raise NotFound("alert")
    return rule


async def get_rule(session: AsyncSession, rule_id: uuid.UUID) -> AlertOut:
    return _out(await _get(session, rule_id))


async def update_rule(
    session: AsyncSession, rule_id: uuid.UUID, data: AlertPatch, *, allow_private: bool
) -> tuple[AlertOut, list[str]]:
    rule = await _get(session, rule_id)
    changed = [f for f in data.__struct_fields__ if getattr(data, f) is not msgspec.UNSET]
    if isinstance(data.match, AlertMatch):
        match = msgspec.to_builtins(data.match)
        match_filters(match)
        rule.match = match
    if isinstance(data.webhook_url, str):
        await _check_url(data.webhook_url, allow_private)
        rule.webhook_url = data.webhook_url
    for name in ("name", "threshold", "window_seconds", "cooldown_seconds", "enabled"):
        value = getattr(data, name)
        if value is not msgspec.UNSET:
            setattr(rule, name, value)
    rule.updated_at = datetime.now(UTC)
    repo = AlertRuleRepository(session=session)
    rule = await repo.update(rule, auto_refresh=True)
    return _out(rule), changed


async def delete_rule(session: AsyncSession, rule_id: uuid.UUID) -> AlertOut:
    rule = await _get(session, rule_id)
    out = _out(rule)
    await session.delete(rule)  # found through the tenant-scoped repository above
    await session.flush()
    return out


async def list_deliveries(session: AsyncSession, rule_id: uuid.UUID, *, limit: int = 500) -> list[AlertDeliveryOut]:
    await _get(session, rule_id)
    repo = AlertDeliveryRepository(session=session)
    statement = (
        select(AlertDelivery)
        .where(AlertDelivery.tenant_id == repo.tenant_id, AlertDelivery.alert_id == rule_id)
        .order_by(AlertDelivery.created_at.desc(), AlertDelivery.attempt.desc())
        .limit(limit)
    )
    rows = (await session.execute(statement)).scalars().all()
    return [
        AlertDeliveryOut(
            id=r.id,
            firing_id=r.firing_id,
            attempt=r.attempt,
            status=r.status,
            http_status=r.http_status,
            error=r.error,
            duration_ms=r.duration_ms,
            created_at=r.created_at,
        )
        for r in rows
    ]
