"""Tenant-scoped repositories: the application's wall around a tenant, in front of row-level security.

``TenantRepository`` takes the tenant from the session it is given (``TenantDB.tenant`` records it in
``session.info``) and refuses a session bound to no tenant. Every query starts from a base statement that
filters on that tenant, and every row it adds is stamped with it, so a service built on it cannot read
or write another tenant's rows even where PostgreSQL's policies would not stop it (for example when run
by the table owner).
"""

from __future__ import annotations

import uuid
from typing import Any, Generic, TypeVar

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AlertDelivery, AlertRule, ApiKey, Base, User

__all__ = [
    "AlertDeliveryRepository",
    "AlertRuleRepository",
    "ApiKeyRepository",
    "TenantRepository",
    "UnboundSession",
    "UserRepository",
]

ModelT = TypeVar("ModelT", bound=Base)


class UnboundSession(RuntimeError):
    """A tenant repository was given a session that is not bound to a tenant."""


class TenantRepository(SQLAlchemyAsyncRepository[ModelT], Generic[ModelT]):
    """Subclasses set ``model_type`` to a model with a ``tenant_id`` column."""

    def __init__(self, *, session: AsyncSession, **kwargs: Any) -> None:
        tenant_id = session.info.get("tenant_id")
        if not isinstance(tenant_id, uuid.UUID):
            raise UnboundSession(f"{type(self).__name__} needs a session from TenantDB.tenant()")
        self.tenant_id = tenant_id
        model: Any = self.model_type
        statement: Any = select(model).where(model.tenant_id == tenant_id)
        super().__init__(session=session, statement=statement, **kwargs)

    async def add(self, data: ModelT, **kwargs: Any) -> ModelT:
        data.tenant_id = self.tenant_id  # type: ignore[attr-defined]
        return await super().add(data, **kwargs)


class UserRepository(TenantRepository[User]):
    model_type = User


class ApiKeyRepository(TenantRepository[ApiKey]):
    model_type = ApiKey


class AlertRuleRepository(TenantRepository[AlertRule]):
    model_type = AlertRule


class AlertDeliveryRepository(TenantRepository[AlertDelivery]):
    model_type = AlertDelivery
