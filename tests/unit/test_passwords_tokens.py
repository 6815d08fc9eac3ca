"""Unit tests for app.auth.passwords (argon2id) and app.auth.tokens (opaque secrets, API keys)."""

from __future__ import annotations

import hashlib
import re
import time
from typing import TYPE_CHECKING

import pytest

from app.auth import passwords, tokens
from app.auth.passwords import (
    DEFAULT_MEMORY_COST_KIB,
    DEFAULT_PARALLELISM,
    DEFAULT_TIME_COST,
    dummy_hash,
    hash_password,
    make_hasher,
    needs_rehash,
    verify_dummy,
    verify_password,
)
from app.auth.tokens import (
    constant_time_equal,
    hash_secret,
    new_api_key,
    new_refresh_token,
    parse_api_key,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from argon2 import PasswordHasher


@pytest.fixture(scope="module")
def cheap() -> PasswordHasher:
    return make_hasher(time_cost=1, memory_cost_kib=4096, parallelism=1)


# --- passwords --------------------------------------------------------------------------------------


def test_hash_and_verify(cheap: PasswordHasher) -> None:
    hashed = hash_password("correct horse battery staple", hasher=cheap)
    assert hashed.startswith("$argon2id$v=19$m=4096,t=1,p=1$")
    assert "correct horse" not in hashed
    assert verify_password(hashed, "correct horse battery staple", hasher=cheap) is True
    assert verify_password(hashed, "correct horse battery stapl", hasher=cheap) is False
    assert verify_password(hashed, "", hasher=cheap) is False


def test_hashes_are_salted(cheap: PasswordHasher) -> None:
    assert hash_password("same", hasher=cheap) != hash_password("same", hasher=cheap)


def test_unicode_password(cheap: PasswordHasher) -> None:
    hashed = hash_password("пароль-密码-🔑", hasher=cheap)
    assert verify_password(hashed, "пароль-密码-🔑", hasher=cheap)
    assert not verify_password(hashed, "пароль-密码-", hasher=cheap)


@pytest.mark.parametrize(
    "bad_hash",
    [
        "",
        "not a hash",
        "$argon2id$v=19$m=4096,t=1,p=1$",
        "$argon2id$v=19$m=4096,t=1,p=1$c2FsdHNhbHRzYWx0$!!!!",
        "$2b$12$abcdefghijklmnopqrstuuM1rS9xE6Cb8B7Zf0qQn4t7xY1w2v3a",  # bcrypt
        "$argon2id$v=19$m=999999999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    ],
)
def test_verify_never_raises_on_malformed_hash(cheap: PasswordHasher, bad_hash: str) -> None:
    assert verify_password(bad_hash, "anything", hasher=cheap) is False
    assert needs_rehash(bad_hash, hasher=cheap) is True


def test_verify_never_raises_on_unencodable_password(cheap: PasswordHasher) -> None:
    hashed = hash_password("pw", hasher=cheap)
    assert verify_password(hashed, "\ud800", hasher=cheap) is False  # lone surrogate


def test_needs_rehash_tracks_parameters(cheap: PasswordHasher) -> None:
    cheap_hash = hash_password("pw", hasher=cheap)
    assert needs_rehash(cheap_hash, hasher=cheap) is False
    assert needs_rehash(cheap_hash) is True  # default parameters are stronger
    stronger = make_hasher(time_cost=2, memory_cost_kib=4096, parallelism=1)
    assert needs_rehash(cheap_hash, hasher=stronger) is True


def test_default_parameters_are_argon2id() -> None:
    hashed = hash_password("pw")
    assert hashed.startswith(
        f"$argon2id$v=19$m={DEFAULT_MEMORY_COST_KIB},t={DEFAULT_TIME_COST},p={DEFAULT_PARALLELISM}$"
    )
    assert verify_password(hashed, "pw")
    assert not verify_password(hashed, "pW")
    assert needs_rehash(hashed) is False
    assert DEFAULT_MEMORY_COST_KIB >= 19 * 1024 and DEFAULT_TIME_COST >= 2  # OWASP minimum


def test_dummy_hash_is_lazy_cached_and_real() -> None:
    first = passwords.DUMMY_HASH
    assert passwords.DUMMY_HASH is first  # computed once
    assert first == dummy_hash()
    assert first.startswith(f"$argon2id$v=19$m={DEFAULT_MEMORY_COST_KIB},t={DEFAULT_TIME_COST},")
    assert needs_rehash(first) is False
    with pytest.raises(AttributeError):
        _ = passwords.NOT_A_NAME  # type: ignore[attr-defined]


def test_dummy_hash_per_parameter_set(cheap: PasswordHasher) -> None:
    cheap_dummy = dummy_hash(cheap)
    assert cheap_dummy is dummy_hash(cheap)
    assert cheap_dummy != dummy_hash()
    assert needs_rehash(cheap_dummy, hasher=cheap) is False


def test_verify_dummy_always_false(cheap: PasswordHasher) -> None:
    assert verify_dummy("anything", hasher=cheap) is False
    assert verify_dummy("", hasher=cheap) is False


def _fastest_seconds(fns: list[Callable[[], object]], rounds: int) -> list[float]:
    """The fastest time of each function over ``rounds``, timed in turns (one of each per round). The fastest
    run is its own cost: other processes on a loaded machine only ever add to a run (a millisecond hash
    preempted once takes several), which made medians of runs in a row differ threefold either way."""
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, taken in zip(fns, samples, strict=True):
            start = time.perf_counter()
            fn()
            taken.append(time.perf_counter() - start)
    return [min(taken) for taken in samples]


def test_verify_dummy_takes_as_long_as_a_wrong_password(cheap: PasswordHasher) -> None:
    hashed = hash_password("real password", hasher=cheap)
    dummy_hash(cheap)  # warm the lazy cache so its one-off hash is not measured
    real, dummy = _fastest_seconds(
        [
            lambda: verify_password(hashed, "wrong password", hasher=cheap),
            lambda: verify_dummy("wrong password", hasher=cheap),
        ],
        25,
    )
    assert real > 0 and dummy > 0
    assert real / 3 <= dummy <= real * 3, (real, dummy)


# --- tokens -----------------------------------------------------------------------------------------

_URLSAFE = re.compile(r"[A-Za-z0-9_-]+")


def test_refresh_token() -> None:
    token, digest = new_refresh_token()
    assert len(token) == 43 and _URLSAFE.fullmatch(token)
    assert digest == hashlib.sha256(token.encode()).digest() == hash_secret(token)
    assert len(digest) == 32
    assert new_refresh_token()[0] != token


def test_hash_secret_is_sha256() -> None:
    assert hash_secret("abc") == bytes.fromhex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


def test_new_api_key_shape() -> None:
    full, public_id, digest = new_api_key()
    prefix, pid, secret = full[:3], full[4:12], full[13:]
    assert prefix == "alk" and full[3] == "_" and full[12] == "_"
    assert pid == public_id and re.fullmatch(r"[A-Za-z0-9]{8}", public_id)
    assert len(secret) == 43 and _URLSAFE.fullmatch(secret)
    assert digest == hash_secret(full)
    assert len(full) == 56


def test_new_api_keys_are_unique() -> None:
    keys = [new_api_key() for _ in range(200)]
    assert len({k[0] for k in keys}) == 200
    assert len({k[1] for k in keys}) == 200


def test_new_api_key_custom_prefix() -> None:
    full, public_id, _ = new_api_key(prefix="test")
    assert full.startswith(f"test_{public_id}_")
    assert parse_api_key(full, prefix="test") == (public_id, full)
    assert parse_api_key(full) is None  # wrong prefix for the default parser


@pytest.mark.parametrize("prefix", ["", "ALK", "a_b", "1ab", "x" * 17])
def test_new_api_key_rejects_bad_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        new_api_key(prefix=prefix)


def test_parse_api_key_round_trip() -> None:
    for _ in range(50):  # secrets may contain '_' and '-'; parsing is positional, not split-based
        full, public_id, _digest = new_api_key()
        assert parse_api_key(full) == (public_id, full)


def test_parse_api_key_secret_with_underscores() -> None:
    full = "alk_AbCd1234_" + "_" * 20 + "-" * 23
    assert parse_api_key(full) == ("AbCd1234", full)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "alk",
        "alk_AbCd1234_",
        "alk_AbCd1234_" + "a" * 42,  # secret too short
        "alk_AbCd1234_" + "a" * 44,  # secret too long
        "alk_AbCd123_" + "a" * 44,  # public id too short
        "alk_AbCd12-4_" + "a" * 43,  # bad char in public id
        "alk_AbCd1234_" + "a" * 42 + "=",  # bad char in secret
        "alk-AbCd1234_" + "a" * 43,  # wrong separator
        "xyz_AbCd1234_" + "a" * 43,  # wrong prefix
        " alk_AbCd1234_" + "a" * 42,  # leading whitespace
        "alk_AbCd1234_" + "a" * 43 + "\n",  # trailing newline
        "Bearer alk_AbCd1234_" + "a" * 43,
    ],
)
def test_parse_api_key_rejects_wrong_shapes(value: str) -> None:
    assert parse_api_key(value) is None


def test_constant_time_equal() -> None:
    full, _, digest = new_api_key()
    assert constant_time_equal(hash_secret(full), digest) is True
    assert constant_time_equal(hash_secret(full + "x"), digest) is False
    assert constant_time_equal(b"", b"") is True
    assert constant_time_equal(b"a", b"ab") is False


def test_modules_export_what_they_define() -> None:
    for module in (passwords, tokens):
        for name in module.__all__:
            assert getattr(module, name) is not None, name
