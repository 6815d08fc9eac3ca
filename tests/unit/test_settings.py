"""Settings: development secrets are generated once, persisted privately, and required in production."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.settings import Environment, Settings


def test_dev_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    first = Settings(env=Environment.development, data_dir=tmp_path).ensure_dev_secrets()
    second = Settings(env=Environment.development, data_dir=tmp_path).ensure_dev_secrets()
    assert first.master_key and first.master_key == second.master_key
    assert first.jwt_signing_keys == second.jwt_signing_keys
    assert first.operator_password == second.operator_password
    mode = stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode)
    assert mode == 0o600


def test_given_secrets_win_over_generated_ones(tmp_path: Path) -> None:
    settings = Settings(env=Environment.development, data_dir=tmp_path, operator_password="given-password")
    assert settings.ensure_dev_secrets().operator_password == "given-password"


def test_production_requires_secrets(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="AUDIT_MASTER_KEY"):
        Settings(env=Environment.production, data_dir=tmp_path)
