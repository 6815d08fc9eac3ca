"""The password policy: a length floor and the zxcvbn common-password blocklist."""

from __future__ import annotations

import pytest

from app.auth.password_policy import MIN_LENGTH, WeakPassword, check_password, password_problem


@pytest.mark.parametrize("password", ["password", "password1234", "Password2024!", "qwerty123456", "a" * 20])
def test_common_or_trivial_passwords_are_refused(password: str) -> None:
    with pytest.raises(WeakPassword) as raised:
        check_password(password, field="new_password")
    assert raised.value.status_code == 422
    assert raised.value.errors == [{"field": "new_password", "message": password_problem(password)}]


def test_short_passwords_are_refused_and_ordinary_ones_pass() -> None:
    assert MIN_LENGTH == 12
    assert password_problem("Tr0ub4dor&3") is not None  # 11 characters
    for good in ("carol-password-1", "correct horse battery staple", "admin-password-1a2b3c4d"):
        assert password_problem(good) is None
