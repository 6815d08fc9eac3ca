"""The ``auditlog`` command line: ``serve`` takes ``--host/--port/--workers`` (``./run`` passes its options
through), and the start-up line names the operator password that applies, not a stale ``secrets.json``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import cli
from app.settings import Environment, Settings, load_settings
from app.web.observability import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    configure_logging("WARNING", json_lines=False)  # main() configured JSON logging for the CLI


def _parsed(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> argparse.Namespace:
    seen: list[argparse.Namespace] = []

    def fake_serve(args: argparse.Namespace) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(cli, "cmd_serve", fake_serve)
    assert cli.main(argv) == 0
    return seen[0]


def test_serve_options_override_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUDIT_PORT", "9000")
    monkeypatch.setenv("AUDIT_HOST", "127.0.0.1")
    monkeypatch.setenv("AUDIT_DATA_DIR", str(tmp_path))
    args = _parsed(monkeypatch, ["serve", "--port", "8001", "--host", "0.0.0.0", "--workers", "2"])
    settings = load_settings(**cli._serve_options(args))
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 8001, 2)


def test_serve_without_options_keeps_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUDIT_PORT", "9000")
    monkeypatch.setenv("AUDIT_DATA_DIR", str(tmp_path))
    args = _parsed(monkeypatch, ["serve"])
    assert cli._serve_options(args) == {}
    assert load_settings(**cli._serve_options(args)).port == 9000


def test_a_bad_port_is_refused_by_argparse(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as exited:
        _parsed(monkeypatch, ["serve", "--port", "eighty"])
    assert exited.value.code == 2


def test_generated_operator_password_points_at_secrets_json(tmp_path: Path) -> None:
    settings = Settings(env=Environment.development, data_dir=tmp_path).ensure_dev_secrets()
    source = cli.operator_password_source(settings)
    assert str(tmp_path / "secrets.json") in source


def test_a_changed_operator_password_does_not_point_at_secrets_json(tmp_path: Path) -> None:
    Settings(env=Environment.development, data_dir=tmp_path).ensure_dev_secrets()  # secrets.json exists
    settings = Settings(
        env=Environment.development, data_dir=tmp_path, operator_password="changed-password-1"
    ).ensure_dev_secrets()
    source = cli.operator_password_source(settings)
    assert "secrets.json" not in source and "AUDIT_OPERATOR_PASSWORD" in source


def test_a_failing_command_logs_one_json_line_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_serve(args: argparse.Namespace) -> int:
        raise RuntimeError("AUDIT_SOMETHING is wrong")

    monkeypatch.setattr(cli, "cmd_serve", broken_serve)
    assert cli.main(["serve"]) == 1
    [line] = [json.loads(text) for text in capsys.readouterr().err.splitlines() if text.strip()]
    assert line["msg"] == "auditlog serve failed" and "AUDIT_SOMETHING is wrong" in line["exc"]
