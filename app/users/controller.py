"""User routes of a tenant (Admin)."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from app.guards import ADMIN
from app.users.schemas import UserOut
from app.users.service import list_users

__all__ = ["UserController"]


class UserController(Controller):
    path = "/api/v1/users"
    tags = ["users"]

    @get("/", guards=[ADMIN], summary="The tenant's users, emails masked (Admin)")
    async def list(self, session: NamedDependency[AsyncSession]) -> list[UserOut]:
        return await list_users(session)
