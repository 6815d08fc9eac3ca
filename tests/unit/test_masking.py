"""Unit tests for app.logs.masking (secret redaction and PII masking of audit events)."""

import copy
from typing import Any

import msgspec
import pytest

from app.logs.masking import (
    MaskResult,
    PiiFinding,
    contains_unmasked_pii,
    mask_email,
    mask_event,
    mask_phone,
    mask_text,
)

R = "[REDACTED]"

# Where a free-text value is placed in an event, and the path it is reported under.
LOCATIONS = {
    "message": "message",
    "metadata_nested_dict": "metadata/request/detail/note",
    "metadata_list": "metadata/notes/1",
    "before_state": "before_state/profile/bio",
    "after_state": "after_state/profile/bio",
}


def _event(location: str, text: str) -> dict[str, Any]:
    event: dict[str, Any] = {"message": None, "metadata": None, "before_state": None, "after_state": None}
    if location == "message":
        event["message"] = text
    elif location == "metadata_nested_dict":
        event["metadata"] = {"request": {"detail": {"note": text}}, "status": 200}
    elif location == "metadata_list":
        event["metadata"] = {"notes": ["first", text, 3]}
    elif location in ("before_state", "after_state"):
        event[location] = {"profile": {"bio": text, "age": 41}}
    else:  # pragma: no cover - guards against typos in the tests themselves
        raise AssertionError(location)
    return event


def _masked_at(result: MaskResult, location: str) -> Any:
    if location == "message":
        return result.message
    if location == "metadata_nested_dict":
        assert result.metadata is not None
        return result.metadata["request"]["detail"]["note"]
    if location == "metadata_list":
        assert result.metadata is not None
        return result.metadata["notes"][1]
    state = result.before_state if location == "before_state" else result.after_state
    assert state is not None
    return state["profile"]["bio"]


def _encoded(result: MaskResult) -> str:
    """Everything that would be stored or indexed (originals of PII excluded)."""
    return msgspec.json.encode([result.message, result.metadata, result.before_state, result.after_state]).decode()


def _assert_redacted(location: str, text: str, secret: str, expected: str, count: int = 1) -> None:
    result = mask_event(**_event(location, text))
    assert _masked_at(result, location) == expected
    assert secret not in _encoded(result)
    assert result.redactions == count
    assert result.pii == []


# --------------------------------------------------------------- secrets: patterns

CARDS = [
    ("4111 1111 1111 1111", "visa, spaces"),
    ("5555-5555-5555-4444", "mastercard, dashes"),
    ("4012888888881881", "visa, contiguous"),
    ("3782 822463 10005", "amex 4-6-5"),
    ("6011111111111117", "discover"),
]


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize(("card", "_label"), CARDS)
def test_card_number_redacted(location: str, card: str, _label: str) -> None:
    _assert_redacted(location, f"paid with {card} today", card, f"paid with {R} today")


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize(
    "number",
    ["4111 1111 1111 1112", "4111111111111112", "5555-5555-5555-4445", "4012888888881882"],
)
def test_luhn_invalid_card_number_not_redacted(location: str, number: str) -> None:
    text = f"order ref {number} shipped"
    result = mask_event(**_event(location, text))
    assert _masked_at(result, location) == text
    assert result.redactions == 0
    assert result.pii == []


JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)


@pytest.mark.parametrize("location", LOCATIONS)
def test_jwt_redacted(location: str) -> None:
    _assert_redacted(location, f"session {JWT} issued", JWT, f"session {R} issued")


@pytest.mark.parametrize("location", LOCATIONS)
def test_bearer_token_redacted(location: str) -> None:
    token = "mF_9.B5f-4.1JqM8xq2"
    _assert_redacted(location, f"forwarded Bearer {token} upstream", token, f"forwarded Bearer {R} upstream")


@pytest.mark.parametrize("location", LOCATIONS)
def test_basic_credentials_redacted(location: str) -> None:
    creds = "dXNlcjpodW50ZXIy"  # user:hunter2
    _assert_redacted(location, f"sent Basic {creds} to proxy", creds, f"sent Basic {R} to proxy")


@pytest.mark.parametrize("location", LOCATIONS)
def test_authorization_header_redacted(location: str) -> None:
    token = "abcdefghij0123456789"
    _assert_redacted(location, f"headers: Authorization: Bearer {token}", token, f"headers: Authorization: Bearer {R}")


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize("key", ["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"])
def test_aws_access_key_redacted(location: str, key: str) -> None:
    _assert_redacted(location, f"aws key {key} used", key, f"aws key {R} used")


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize(
    "token",
    [
        "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
        "gho_" + "A" * 36,
        "ghs_" + "0" * 36,
        "ghu_" + "z9" * 18,
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOP",
    ],
)
def test_github_token_redacted(location: str, token: str) -> None:
    _assert_redacted(location, f"cloned with {token} ok", token, f"cloned with {R} ok")


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize("token", ["xoxb-123456789012-abcdefghijkl", "xoxp-1234-5678-abcdefabcdef"])
def test_slack_token_redacted(location: str, token: str) -> None:
    _assert_redacted(location, f"slack {token} posted", token, f"slack {R} posted")


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize(
    "key", ["sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc", "sk_test_" + "51H8abcdEFGH", "rk_live_" + "ABCdef123456"]
)
def test_stripe_key_redacted(location: str, key: str) -> None:
    _assert_redacted(location, f"stripe {key} charged", key, f"stripe {R} charged")


@pytest.mark.parametrize("location", LOCATIONS)
def test_google_api_key_redacted(location: str) -> None:
    key = "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"
    _assert_redacted(location, f"maps {key} quota", key, f"maps {R} quota")


PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize("label", ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
def test_private_key_block_redacted(location: str, label: str) -> None:
    pem = f"-----BEGIN {label}-----\n{PEM_BODY}\nabc+/=\n-----END {label}-----"
    _assert_redacted(location, f"uploaded {pem} done", PEM_BODY, f"uploaded {R} done")


def test_truncated_private_key_block_redacted_to_end() -> None:
    masked, found = mask_text(f"key -----BEGIN PRIVATE KEY-----\n{PEM_BODY}")
    assert masked == f"key {R}"
    assert [kind for kind, _, _ in found] == ["private_key"]


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize(
    ("text", "secret", "expected"),
    [
        ("login password=hunter2 user=bob", "hunter2", f"login password={R} user=bob"),
        ("retry with token: abc123xyz", "abc123xyz", f"retry with token: {R}"),
        ("secret=s3cr3t&next=/home", "s3cr3t", f"secret={R}&next=/home"),
        ('cfg api_key="k-998877" loaded', "k-998877", f'cfg api_key="{R}" loaded'),
        ("env DB_PASSWORD='p@ss w0rd' set", "p@ss w0rd", f"env DB_PASSWORD='{R}' set"),
        ('body {"client_secret": "cs-4242"}', "cs-4242", f'body {{"client_secret": "{R}"}}'),
        ("API-KEY = zz99zz99", "zz99zz99", f"API-KEY = {R}"),
        ('cut off password="hunter2 and more', "hunter2 and more", f'cut off password="{R}'),
        ('raw {\\"password\\": \\"hunter2\\"}', "hunter2", f'raw {{\\"password\\": \\"{R}\\"}}'),
    ],
)
def test_key_value_secret_in_text_redacts_only_the_value(location: str, text: str, secret: str, expected: str) -> None:
    _assert_redacted(location, text, secret, expected)


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize(
    ("url", "password", "expected"),
    [
        (
            "postgres://admin:s3cr3t@db.internal:5432/app",
            "s3cr3t",
            f"postgres://admin:{R}@db.internal:5432/app",
        ),
        ("https://bob:Tr0ub4dor@example.com/x", "Tr0ub4dor", f"https://bob:{R}@example.com/x"),
        ("redis://default:hunter2@cache:6379/0", "hunter2", f"redis://default:{R}@cache:6379/0"),
    ],
)
def test_url_credentials_password_redacted(location: str, url: str, password: str, expected: str) -> None:
    _assert_redacted(location, f"connect {url} now", password, f"connect {expected} now")


@pytest.mark.parametrize(
    "value",
    [
        JWT,
        "AKIAIOSFODNN7EXAMPLE",
        "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
        "AIza" + "SyD9tSrke72PouQMnMXa7eZSW0jkFMBWYab",  # all alphanumeric
        "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
        "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
        "xoxb-123456789012-abcdefghijkl",
        "4111111111111111",
    ],
)
def test_bare_secret_value_under_ordinary_key_redacted(value: str) -> None:
    result = mask_event(None, {"value": value, "list": [value]}, None, None)
    assert result.metadata == {"value": R, "list": [R]}
    assert result.redactions == 2


def test_text_that_only_resembles_secrets_is_left_alone() -> None:
    for text in [
        "Basic plan upgraded to Pro",
        "bearer of bad news",
        "compass: north",
        "has_password=true",
        "token_count=42 max_tokens=100",
        "password reset requested",
        "https://example.com/path?q=1",
        "git@github.com:org/repo.git is a remote",  # e-mail-like, but not a secret
    ]:
        masked, found = mask_text(text)
        assert [f for f in found if f[0] not in ("email", "phone")] == [], text
        if "@" not in text:
            assert masked == text


def test_secret_next_to_non_ascii_text_is_redacted() -> None:
    # "İ".lower() is two code points; the case-insensitive fallback must still work.
    masked, found = mask_text("İstanbul Password=hunter2 ok")
    assert masked == f"İstanbul Password={R} ok"
    assert found == [("secret", "hunter2", R)]


def test_mask_text_reports_secret_kinds() -> None:
    text = f"card 4111111111111111 jwt {JWT} aws AKIAIOSFODNN7EXAMPLE token=abc123"
    masked, found = mask_text(text)
    assert masked == f"card {R} jwt {R} aws {R} token={R}"
    assert sorted(kind for kind, _, _ in found) == ["aws_access_key", "card", "jwt", "secret"]
    assert all(replacement == R for _, _, replacement in found)
    assert ("card", "4111111111111111", R) in found


# ---------------------------------------------------------------- secrets: by key


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "DB_PASSWORD",
        "db-password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refreshToken",
        "id_token",
        "githubToken",
        "api_key",
        "apiKey",
        "X-API-Key",
        "Authorization",
        "auth",
        "cookie",
        "Set-Cookie",
        "private_key",
        "secret_key",
        "stripe.secret.key",
        "aws_access_key",
        "session_token",
        "credential",
        "cvv",
        "cvc",
        "pin",
        "ssn",
        "otp",
        "card number",
    ],
)
def test_secret_key_value_redacted(key: str) -> None:
    metadata = {key: "s3nsitive-value", "user": {key: "s3nsitive-value"}}
    result = mask_event(None, metadata, None, None)
    assert result.metadata == {key: R, "user": {key: R}}
    assert result.redactions == 2
    assert result.pii == []


@pytest.mark.parametrize("key", ["card_number", "creditCard", "cc", "cvv", "pin"])
def test_int_under_card_like_or_secret_key_redacted(key: str) -> None:
    result = mask_event(None, {key: 4111111111111111}, {"payment": {key: 1234}}, None)
    assert result.metadata == {key: R}
    assert result.before_state == {"payment": {key: R}}
    assert result.redactions == 2


def test_container_under_secret_key_redacted_as_a_whole() -> None:
    before = {"credentials": {"user": "bob", "password": "x"}, "tokens": ["a"], "api_keys": ["k1", "k2"]}
    after = {"auth": {"type": "oauth", "refresh_token": "r"}}
    result = mask_event(None, None, before, after)
    # "tokens"/"api_keys" are plural collections, not a secret name: only their items are scanned.
    assert result.before_state == {"credentials": R, "tokens": ["a"], "api_keys": ["k1", "k2"]}
    assert result.after_state == {"auth": R}
    assert result.redactions == 2


def test_none_bool_and_empty_under_secret_key_pass_through() -> None:
    metadata = {"password": None, "has_password": True, "token": "", "otp": False}
    result = mask_event(None, metadata, None, None)
    assert result.metadata == metadata
    assert result.redactions == 0


def test_keys_that_merely_contain_a_secret_word_are_not_secret() -> None:
    metadata = {
        "compass": "north",
        "bypass_cache": "yes",
        "token_count": 42,
        "author": "bob",
        "password_changed_at": "2026-11-27",
        "pinned": "yes",
        "bcc": "list",
    }
    result = mask_event(None, metadata, None, None)
    assert result.metadata == metadata
    assert result.redactions == 0


# ------------------------------------------------------------------------------ PII


def test_mask_email_format() -> None:
    assert mask_email("john.doe@example.com") == "j***@e***.com"
    assert mask_email("a@b.io") == "a***@b***.io"
    assert mask_email("Jane+tag@mail.example.co.uk") == "J***@m***.uk"
    assert mask_email("j***@e***.com") == "j***@e***.com"  # idempotent
    assert mask_email("bob") == "b***"


def test_mask_phone_format() -> None:
    assert mask_phone("+1 (555) 123-4567") == "+* (***) ***-**67"
    assert mask_phone("555-123-4567") == "***-***-**67"
    assert mask_phone("+44 20 7946 0958") == "+** ** **** **58"
    assert mask_phone("12345678") == "******78"
    assert mask_phone("******78") == "******78"  # idempotent


@pytest.mark.parametrize("location", LOCATIONS)
def test_email_masked_and_original_returned(location: str) -> None:
    result = mask_event(**_event(location, "contact john.doe@example.com today"))
    assert _masked_at(result, location) == "contact j***@e***.com today"
    assert result.pii == [
        PiiFinding(path=LOCATIONS[location], kind="email", original="john.doe@example.com", masked="j***@e***.com")
    ]
    assert "john.doe@example.com" not in _encoded(result)
    assert result.redactions == 0


PHONES = [
    ("+1 (555) 123-4567", "+* (***) ***-**67"),
    ("+44 20 7946 0958", "+** ** **** **58"),
    ("+4915112345678", "+***********78"),
    ("+33.1.23.45.67.89", "+**.*.**.**.**.89"),
    ("(555) 123-4567", "(***) ***-**67"),
    ("555-123-4567", "***-***-**67"),
    ("555.123.4567", "***.***.**67"),
    ("1-555-123-4567", "*-***-***-**67"),
    ("020 7946 0958", "*** **** **58"),
    ("07911 123456", "***** ****56"),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("phone:555-123-4567", "phone:***-***-**67"),
        ("tel:+15551234567", "tel:+*********67"),
        ("phone=(555) 123-4567.", "phone=(***) ***-**67."),
    ],
)
def test_phone_glued_to_a_label_masked(text: str, expected: str) -> None:
    masked, found = mask_text(text)
    assert masked == expected
    assert [kind for kind, _, _ in found] == ["phone"]


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize(("phone", "masked"), PHONES)
def test_phone_masked_and_original_returned(location: str, phone: str, masked: str) -> None:
    result = mask_event(**_event(location, f"call {phone} asap"))
    assert _masked_at(result, location) == f"call {masked} asap"
    assert result.pii == [PiiFinding(path=LOCATIONS[location], kind="phone", original=phone, masked=masked)]
    assert phone not in _encoded(result)
    assert result.redactions == 0


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-27",
        "on 2026-11-27 and 27.11.2026 and 11/27/2026",
        "at 10:15:30 or 23:59:59.999",
        "id 123e4567-e89b-12d3-a456-426614174000",
        "id 12345678-1234-5678-1234-567812345678",
        "from 192.168.100.200 and 10.0.0.1 and 255.255.255.255",
        "version 1.2.3, 10.15.7, 2.31.0.1234, v2024.10.1",
        "at 2026-11-27T10:15:30.123456+00:00",
        "at 2026-11-27T10:15:30Z / 2026-11-27T10:15:30+0530 / 2026-11-27 10:15:30-08:00",
        "epoch 1732675200 ms 1732675200123 ns 1732675200123456789",
        "amount 1234567.89 EUR, 12 items",
        "sku SKU-987-654-3210 and path /v2/987-654-3210",
    ],
)
def test_false_positives_not_masked(text: str) -> None:
    metadata = {"note": text, "nested": {"list": [text]}}
    result = mask_event(text, metadata, None, None)
    assert result.message == text
    assert result.metadata == metadata
    assert result.pii == []
    assert result.redactions == 0
    assert not contains_unmasked_pii(text)


@pytest.mark.parametrize("key", ["email", "e_mail", "E-Mail", "mail", "userEmail"])
def test_value_under_email_key_masked_even_without_pattern(key: str) -> None:
    result = mask_event(None, {"user": {key: "bob"}}, None, None)
    assert result.metadata == {"user": {key: "b***"}}
    assert result.pii == [PiiFinding(path=f"metadata/user/{key}", kind="email", original="bob", masked="b***")]


@pytest.mark.parametrize("key", ["phone", "phoneNumber", "phone_number", "mobile", "tel", "telephone"])
def test_value_under_phone_key_masked_even_without_pattern(key: str) -> None:
    result = mask_event(None, None, None, {"contacts": [{key: "12345678"}]})
    assert result.after_state == {"contacts": [{key: "******78"}]}
    assert result.pii == [
        PiiFinding(path=f"after_state/contacts/0/{key}", kind="phone", original="12345678", masked="******78")
    ]


def test_pattern_match_under_pii_key_reports_only_the_substring() -> None:
    result = mask_event(None, {"email": "Bob <bob@example.com>"}, None, None)
    assert result.metadata == {"email": "Bob <b***@e***.com>"}
    assert result.pii == [
        PiiFinding(path="metadata/email", kind="email", original="bob@example.com", masked="b***@e***.com")
    ]


def test_list_under_pii_key_masks_every_item() -> None:
    result = mask_event(None, {"phone": ["12345678", "87654321"]}, None, None)
    assert result.metadata == {"phone": ["******78", "******21"]}
    assert [f.path for f in result.pii] == ["metadata/phone/0", "metadata/phone/1"]


def test_int_under_phone_key_masked() -> None:
    result = mask_event(None, {"phone": 5551234567}, None, None)
    assert result.metadata == {"phone": "********67"}
    assert result.pii == [PiiFinding(path="metadata/phone", kind="phone", original="5551234567", masked="********67")]


def test_secrets_are_handled_before_pii() -> None:
    # A card number under a phone key, or next to phone-like text, is a secret, not a phone.
    result = mask_event("tel 4111-1111-1111-1111", {"phone": "4111111111111111"}, None, None)
    assert result.message == f"tel {R}"
    assert result.metadata == {"phone": R}
    assert result.redactions == 2
    assert result.pii == []


def test_secret_and_pii_in_one_string() -> None:
    masked, found = mask_text("user bob@example.com password=hunter2 phone +1 555 123 4567")
    assert masked == f"user b***@e***.com password={R} phone +* *** *** **67"
    assert found == [
        ("secret", "hunter2", R),
        ("email", "bob@example.com", "b***@e***.com"),
        ("phone", "+1 555 123 4567", "+* *** *** **67"),
    ]


def test_contains_unmasked_pii() -> None:
    assert contains_unmasked_pii("mail bob@example.com")
    assert contains_unmasked_pii("call +44 20 7946 0958")
    assert contains_unmasked_pii("call (555) 123-4567")
    assert not contains_unmasked_pii("mail b***@e***.com, call +** ** **** **58")
    assert not contains_unmasked_pii("nothing to see on 2026-11-27 from 10.0.0.1")
    masked, _ = mask_text("bob@example.com / +1 (555) 123-4567")
    assert not contains_unmasked_pii(masked)


# ------------------------------------------------------------ whole-event behaviour


def _rich_event() -> dict[str, Any]:
    return {
        "message": "alice@example.com paid with 4111 1111 1111 1111, token=abc123, call +1 (555) 123-4567",
        "metadata": {
            "ip": "10.0.0.1",
            "request_id": "550e8400-e29b-41d4-a716-446655440000",
            "user": {"email": "bob@example.org", "phone": "12345678", "password": "hunter2"},
            "tags": ["vip", "carol@example.net"],
            "headers": {"Authorization": "Bearer abcdefghij0123456789", "a/b~c": "dave@example.com"},
            "count": 3,
            "ratio": 0.5,
            "ok": True,
            "none": None,
        },
        "before_state": {"items": [{"phone": "+44 20 7946 0958"}], "card_number": 4111111111111111},
        "after_state": {"items": [{"phone": "555-123-4567"}], "db": "postgres://u:pw123456@h/db"},
    }


def test_findings_carry_originals_and_paths() -> None:
    result = mask_event(**_rich_event())
    assert result.pii == [
        PiiFinding("message", "email", "alice@example.com", "a***@e***.com"),
        PiiFinding("message", "phone", "+1 (555) 123-4567", "+* (***) ***-**67"),
        PiiFinding("metadata/user/email", "email", "bob@example.org", "b***@e***.org"),
        PiiFinding("metadata/user/phone", "phone", "12345678", "******78"),
        PiiFinding("metadata/tags/1", "email", "carol@example.net", "c***@e***.net"),
        PiiFinding("metadata/headers/a~1b~0c", "email", "dave@example.com", "d***@e***.com"),
        PiiFinding("before_state/items/0/phone", "phone", "+44 20 7946 0958", "+** ** **** **58"),
        PiiFinding("after_state/items/0/phone", "phone", "555-123-4567", "***-***-**67"),
    ]
    # card + token in the message, password, Authorization, card_number, URL password
    assert result.redactions == 6
    assert result.message == f"a***@e***.com paid with {R}, token={R}, call +* (***) ***-**67"
    assert result.metadata is not None
    assert result.metadata["user"] == {"email": "b***@e***.org", "phone": "******78", "password": R}
    assert result.metadata["headers"] == {"Authorization": R, "a/b~c": "d***@e***.com"}
    assert result.after_state == {"items": [{"phone": "***-***-**67"}], "db": f"postgres://u:{R}@h/db"}
    stored = _encoded(result)
    for finding in result.pii:
        assert finding.original not in stored
    for secret in ("4111", "abc123", "hunter2", "abcdefghij0123456789", "pw123456"):
        assert secret not in stored


def test_non_string_scalars_and_inert_values_pass_through() -> None:
    metadata = {
        "count": 3,
        "ratio": 0.5,
        "ok": True,
        "none": None,
        "big": 4111111111111112,  # a big int that is not a card number (Luhn) passes
        "epoch_ms": 1732675200123,
        "ip": "10.0.0.1",
        "request_id": "550e8400-e29b-41d4-a716-446655440000",
        "at": "2026-11-27T10:15:30Z",
    }
    result = mask_event(None, metadata, None, None)
    assert result.metadata == metadata
    assert result.pii == []
    assert result.redactions == 0


def test_none_fields_stay_none() -> None:
    result = mask_event(None, None, None, None)
    assert result == MaskResult(None, None, None, None, [], 0)


def test_inputs_not_mutated_and_containers_are_new() -> None:
    event = _rich_event()
    snapshot = copy.deepcopy(event)
    result = mask_event(**event)
    assert event == snapshot
    assert result.metadata is not event["metadata"]
    assert result.metadata is not None
    assert result.metadata["user"] is not event["metadata"]["user"]
    assert result.metadata["tags"] is not event["metadata"]["tags"]
    # a clean event still gets fresh containers
    clean = {"a": {"b": [1, 2]}}
    clean_result = mask_event(None, clean, None, None)
    assert clean_result.metadata == clean
    assert clean_result.metadata is not clean
    assert clean_result.metadata is not None
    assert clean_result.metadata["a"] is not clean["a"]
    assert clean_result.metadata["a"]["b"] is not clean["a"]["b"]


def test_masking_is_idempotent() -> None:
    first = mask_event(**_rich_event())
    assert first.pii and first.redactions
    second = mask_event(first.message, first.metadata, first.before_state, first.after_state)
    assert second.message == first.message
    assert second.metadata == first.metadata
    assert second.before_state == first.before_state
    assert second.after_state == first.after_state
    assert second.pii == []
    assert second.redactions == 0


@pytest.mark.parametrize(
    "text",
    [f"a {JWT} b", "x " + "ghp_" + "A" * 36, "Authorization: Basic dXNlcjpwYXNz", "k password='a b' c"],
)
def test_mask_text_is_idempotent(text: str) -> None:
    once, found = mask_text(text)
    assert found
    twice, found_again = mask_text(once)
    assert twice == once
    assert found_again == []


def test_pathologically_deep_nesting_fails_closed() -> None:
    deep: dict[str, Any] = {"leaf": "bob@example.com"}
    for _ in range(300):
        deep = {"d": deep}
    result = mask_event(None, deep, None, None)
    assert "bob@example.com" not in _encoded(result)
    assert result.redactions == 1


# ------------------------------------------- issue 14, finding 4: what came back verbatim

PCT_JWT = "Authorization%3A%20Bearer%20" + JWT


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('params {"password"=>"hunter2"} saved', f'params {{"password"=>"{R}"}} saved'),
        ("{:password => 'hunter2'}", f"{{:password => '{R}'}}"),
        ("ran mysql --password hunter2 -h db", f"ran mysql --password {R} -h db"),
        ("ran tool --db-pass 'hunter2' now", f"ran tool --db-pass '{R}' now"),
        ("ran tool -token hunter2", f"ran tool -token {R}"),
        ("<User>bob</User><Password>hunter2</Password>", f"<User>bob</User><Password>{R}</Password>"),
        ("<ns:api_key type='x'>hunter2</ns:api_key>", f"<ns:api_key type='x'>{R}</ns:api_key>"),
        ("body=%7B%22password%22%3A%22hunter2%22%7D", f"body=%7B%22password%22%3A%22{R}%22%7D"),
        (
            "body=%257B%2522password%2522%253A%2522hunter2%2522%257D",
            f"body=%257B%2522password%2522%253A%2522{R}%2522%257D",
        ),
        (f"hdr {PCT_JWT} end", f"hdr Authorization%3A%20Bearer%20{R} end"),
        ("password\u00a0=\u00a0hunter2 ok", f"password\u00a0=\u00a0{R} ok"),
        ("password\u3000\uff1d\u3000hunter2 ok", f"password\u3000\uff1d\u3000{R} ok"),
        ("password\uff1dhunter2", f"password\uff1d{R}"),
        ("token\uff1a hunter2", f"token\uff1a {R}"),
        (
            "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44=hunter2",
            f"\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44={R}",
        ),
        ('raw {\\\\\\"password\\\\\\": \\\\\\"hunter2\\\\\\"}', f'raw {{\\\\\\"password\\\\\\": \\\\\\"{R}\\\\\\"}}'),
        ("json {\\u0022password\\u0022: \\u0022hunter2\\u0022}", f"json {{\\u0022password\\u0022: \\u0022{R}\\u0022}}"),
        ("html {&quot;password&quot;: &quot;hunter2&quot;}", f"html {{&quot;password&quot;: &quot;{R}&quot;}}"),
        ("userPass=hunter2 next", f"userPass={R} next"),
        ("db_pass: hunter2", f"db_pass: {R}"),
        ("pw=hunter2", f"pw={R}"),
        ("passcode=hunter2", f"passcode={R}"),
        ("encryption_key=hunter2", f"encryption_key={R}"),
    ],
)
def test_finding_4_text_forms_redacted(location: str, text: str, expected: str) -> None:
    _assert_redacted(location, text, "hunter2" if "hunter2" in text else JWT, expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"jwt_{JWT}", f"jwt_{R}"),
        (f"id0{JWT} x", f"id0{R} x"),
        ("x-auth:Bearer abcdefghij0123456789", f"x-auth:Bearer {R}"),
        ("header_Bearer abcdefghij0123456789", f"header_Bearer {R}"),
        ("Bearer abcdefghijklmnop", f"Bearer {R}"),
    ],
)
def test_bearer_and_jwt_without_a_preceding_space_redacted(text: str, expected: str) -> None:
    masked, found = mask_text(text)
    assert masked == expected
    assert len(found) == 1 and found[0][2] == R


@pytest.mark.parametrize(
    "key",
    [
        "db_pass",
        "userPass",
        "pw",
        "passcode",
        "encryption_key",
        "api_key",
        "private_key",
        "signingKey",
        "ssh-key",
        "password_hash",
        "api_key_value",
        "basic_auth",
        "user_pin",
        "csrfToken",
        "session_token",
        "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44",  # full-width "password"
        "DB_PW",
    ],
)
def test_finding_4_secret_key_names_redacted(key: str) -> None:
    result = mask_event(None, {key: "hunter2"}, {"nested": {key: 1234}}, None)
    assert result.metadata == {key: R}
    assert result.before_state == {"nested": {key: R}}
    assert result.redactions == 2


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("password_changed", True),
        ("password_changed", "yes"),
        ("passwordChangedAt", "2026-11-27T10:15:30Z"),
        ("token_count", 3),
        ("tokenType", "refresh"),
        ("key", "orders/2026/11/report.csv"),
        ("resource_key", "doc-42"),
        ("cache_key", "user:42:profile"),
        ("sort_key", "b"),
        ("public_key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"),
        ("idempotency_key", "req-7"),
        ("key_id", "k-1"),
        ("session_id", "sess-123"),
        ("session", "s-9"),
        ("bypass", "cache"),
        ("passenger", "Ada"),
        ("author", "bob"),
        ("pinned", "yes"),
        ("secret_name", "prod/db"),
    ],
)
def test_harmless_key_names_kept(key: str, value: Any) -> None:
    result = mask_event(None, {key: value}, None, None)
    assert result.metadata == {key: value}
    assert result.redactions == 0


@pytest.mark.parametrize("location", ["metadata", "before_state", "after_state"])
def test_card_number_as_json_number_redacted(location: str) -> None:
    event: dict[str, Any] = {"message": None, "metadata": None, "before_state": None, "after_state": None}
    event[location] = {"card": 4111111111111111, "payments": [{"pan": 5555555555554444}, 378282246310005]}
    result = mask_event(**event)
    assert getattr(result, location) == {"card": R, "payments": [{"pan": R}, R]}
    assert result.redactions == 3
    assert "4111111111111111" not in _encoded(result)


@pytest.mark.parametrize(
    "number",
    [
        3,
        1234567,
        4111111111111112,  # Luhn-invalid
        1732675200123,  # epoch milliseconds
        1732675200123456789,  # epoch nanoseconds
        1859371264720715776,  # a snowflake id
        20261127103012,  # a compact timestamp, Luhn-valid
        4111111111111111111,  # 19 digits: as a JSON number more likely an id than a card
    ],
)
def test_ordinary_numbers_kept(number: int) -> None:
    result = mask_event(None, {"n": number, "list": [number]}, None, {"n": number})
    assert result.metadata == {"n": number, "list": [number]}
    assert result.after_state == {"n": number}
    assert result.redactions == 0


def _luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def test_compact_timestamp_fixtures_are_luhn_valid() -> None:
    # The timestamps above and below are kept by the network-prefix rule, not by luck of Luhn.
    assert _luhn_valid("4111111111111111") and not _luhn_valid("4111111111111112")
    assert _luhn_valid("20261127103012")


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize("glued", ["PAN-4111111111111111", "card_4111111111111111", "cc:4111111111111111"])
def test_card_number_glued_to_a_label_redacted(location: str, glued: str) -> None:
    label = glued[:-16]
    _assert_redacted(location, f"charged {glued} ok", "4111111111111111", f"charged {label}{R} ok")


@pytest.mark.parametrize(
    "text",
    [
        "INV-20261127103012",  # compact timestamp glued to a label
        "id a4111111111111111",  # inside a hex-ish token
        "sha 4111111111111111abc",
    ],
)
def test_digits_inside_tokens_not_taken_for_cards(text: str) -> None:
    masked, found = mask_text(text)
    assert masked == text
    assert found == []


@pytest.mark.parametrize("location", ["before_state", "after_state", "metadata"])
def test_header_pair_in_a_list_redacted(location: str) -> None:
    event: dict[str, Any] = {"message": None, "metadata": None, "before_state": None, "after_state": None}
    event[location] = {
        "headers": [["Authorization", "Bearer abcdefghijklmnop"], ["Accept", "text/html"]],
        "pair": ["Authorization", "Bearer abcdefghijklmnop"],
        "cookie_pair": ["Cookie", "sid=abcdef0123"],
    }
    result = mask_event(**event)
    assert getattr(result, location) == {
        "headers": [["Authorization", R], ["Accept", "text/html"]],
        "pair": ["Authorization", R],
        "cookie_pair": ["Cookie", R],
    }
    assert "abcdefghijklmnop" not in _encoded(result)


def test_lists_of_field_names_are_not_pairs() -> None:
    after = {"changed_fields": ["password", "email"], "scopes": ["token", "read"], "x": ["pass", "fail"]}
    result = mask_event(None, None, None, after)
    assert result.after_state == after
    assert result.redactions == 0


@pytest.mark.parametrize("location", LOCATIONS)
@pytest.mark.parametrize(
    ("text", "masked"),
    [("call 0912345678 now", "call ********78 now"), ("uk 07911123456.", "uk *********56.")],
)
def test_national_phone_without_separators_masked(location: str, text: str, masked: str) -> None:
    result = mask_event(**_event(location, text))
    assert _masked_at(result, location) == masked
    assert [(f.kind, f.path) for f in result.pii] == [("phone", LOCATIONS[location])]
    assert result.redactions == 0


def test_bare_national_phone_value_masked() -> None:
    result = mask_event(None, {"contact": "0912345678"}, None, None)
    assert result.metadata == {"contact": "********78"}
    assert result.pii == [PiiFinding("metadata/contact", "phone", "0912345678", "********78")]


@pytest.mark.parametrize("text", ["0012345678", "order 912345678", "v0912345678x", "id-0912345678", "09123"])
def test_other_digit_runs_not_national_phones(text: str) -> None:
    masked, found = mask_text(text)
    assert masked == text
    assert found == []


@pytest.mark.parametrize(
    "text",
    [
        "next=%2Fhome%3Fa%3D1&lang=en",
        "50% done, 100%25 sure",
        'path C:\\temp\\"quoted\\" ok',
        "Tom &amp; Jerry &quot;show&quot;",
        "password_changed=true token_count=3",
        "password&nbsp;reset",
        "<PasswordPolicy>strict</PasswordPolicy>",
        "<compass>north</compass>",
        "run --verbose --password-file /etc/pw.txt",
        "\u00a0token\u00a0count\u3000\uff1d 3",
        "the bearer of bad news",
    ],
)
def test_encoded_and_spaced_text_without_secrets_kept(text: str) -> None:
    masked, found = mask_text(text)
    assert masked == text
    assert found == []


@pytest.mark.parametrize(
    "text",
    [
        "body=%7B%22password%22%3A%22hunter2%22%7D",
        'raw {\\\\\\"password\\\\\\": \\\\\\"hunter2\\\\\\"}',
        "ran mysql --password hunter2",
        "<Password>hunter2</Password>",
        "password\u3000\uff1d\u3000hunter2",
    ],
)
def test_finding_4_forms_idempotent(text: str) -> None:
    once, found = mask_text(text)
    assert found and "hunter2" not in once
    twice, found_again = mask_text(once)
    assert twice == once
    assert found_again == []
