"""The analyst agent: questions in plain language answered with checked SQL over the caller's tenant ``events``.

- ``sql_guard``: the check every model-written statement passes before it runs;
- ``runner``: running a checked statement in the engine's sandbox with row and time limits;
- ``catalog``: what the model is told about the tenant's events, read from the engine;
- ``intent`` + ``offline``: the built-in offline model (a pydantic-ai ``FunctionModel``);
- ``analyst``: the pydantic-ai agent, its ``run_sql`` tool, model resolution and ``ask``.
"""

from analytics.agent.analyst import Answer, AskDeps, Turn, ask, resolve_model
from analytics.agent.catalog import Catalog, CatalogCache
from analytics.agent.runner import QueryResult
from analytics.agent.sql_guard import CheckedSql, SqlRefused, check_sql

__all__ = [
    "Answer",
    "AskDeps",
    "Catalog",
    "CatalogCache",
    "CheckedSql",
    "QueryResult",
    "SqlRefused",
    "Turn",
    "ask",
    "check_sql",
    "resolve_model",
]
