"""Mask secrets and PII in audit events before they are stored or indexed.

Tenants send free-form audit events, and those events regularly carry data that must
never reach the log store or the search index verbatim: passwords and API tokens pasted
into metadata, ``Authorization`` headers copied into messages, payment card numbers, and
end users' e-mail addresses and phone numbers.  Every event passes through
:func:`mask_event` on the ingest path, which applies two policies:

* **Secrets** (credentials, keys, tokens, card numbers) are replaced by ``[REDACTED]``
  and the original is discarded for good.
* **PII** (e-mail addresses, phone numbers) is masked in place (``j***@e***.com``,
  ``+** *** *** **67``) and the originals are returned as :class:`PiiFinding` so the
  caller can keep them, encrypted, in the PII vault.

Secrets are handled before PII, so a card number is redacted rather than mistaken for a
phone number.  The functions are pure (inputs are never mutated), idempotent (masking an
already-masked event is a no-op) and tuned for the hot path: regexes are compiled once
at import time and cheap pre-checks skip the expensive patterns for most strings.

What is found, and the judgement calls (each tested in both directions):

* **Key names** are NFKC-normalised (full-width letters fold to ASCII), split at camelCase,
  ``_``, ``-``, ``.`` and spaces, and judged by their *last* word: ``db_pass``,
  ``userPass``, ``pw``, ``passcode``, ``access_token``, ``basic_auth``, ``user_pin`` name a
  secret; ``password_changed``, ``token_count``, ``password_changed_at``, ``bypass_cache``
  do not (they describe one).  A trailing ``value``/``hash``/``digest``/``plain``/... is
  looked through (``password_hash``, ``api_key_value``).  ``key`` alone is an identifier
  (``key``, ``resource_key``, ``cache_key``, ``sort_key``, ``public_key``,
  ``idempotency_key`` stay); it names a secret only after a credential qualifier
  (``api_key``, ``encryption_key``, ``private_key``, ``signing_key``, ``ssh_key``, ...).
  ``session``/``session_id`` are correlation ids the API itself carries and stay;
  ``session_token``/``session_secret``/``session_key`` are secrets.
* **Under a secret key** every value but ``None``, booleans and ``""`` is redacted, short
  numbers included: PINs, OTPs and CVVs *are* short numbers, and a flag such as
  ``has_password: true`` reveals nothing.  False positives are kept out by the key rules
  above, not by guessing from the value.
* **Key/value text** (``password=``, ``"token": "..."``, ``{"password"=>"..."}``,
  ``--password value``, ``<Password>value</Password>``, ``Authorization: Bearer ...``):
  only the value is redacted.  Non-breaking and full-width spaces and the full-width
  equals sign and colon (U+FF1D, U+FF1A) count as their ASCII forms.  Percent-encoding
  (``%22password%22%3A%22...``), backslash-escaped quotes at any depth (escaped JSON inside
  escaped JSON), ``\\u00XX`` and the common HTML quote entities are decoded in a view of the
  string before matching, and the hit is
  redacted in the original representation (escapes around it stay intact).
* **Bearer credentials and JWTs** need no preceding space (``Bearer%20eyJ...``,
  ``id_eyJ...``); a string that is nothing but ``Bearer <credential>`` is always a secret,
  and so is the second item of a ``[name, value]`` pair whose name is a secret key when
  the value looks like a credential (a digit, an auth scheme, or 16+ characters without a
  space): ``["Authorization", "Bearer ..."]`` is redacted, ``["password", "email"]`` (a
  list of changed fields) is not.
* **Card numbers**: Luhn-valid runs of 13-19 digits whose prefix can be a card network's
  (a leading ``1``, and a leading ``2`` outside Mastercard's 2221-2720, are refused, which
  keeps epochs, snowflake ids and compact ``2026...`` timestamps out), also glued to a
  label (``PAN-4111...``), and JSON **numbers** of 13-16 digits under any key (longer
  numbers are far more often 64-bit ids than 19-digit cards).
* **Phones** include bare national numbers with a trunk prefix (``0912345678``: ``0``, a
  non-zero digit, 10-12 digits in all); a zero-padded id of that shape is masked too, which
  loses nothing for good (the original is kept in the PII vault).
"""

import base64
import binascii
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any, Final

import msgspec

__all__ = [
    "MaskResult",
    "PiiFinding",
    "contains_unmasked_pii",
    "mask_email",
    "mask_event",
    "mask_phone",
    "mask_text",
]

REDACTED: Final = "[REDACTED]"

KIND_EMAIL: Final = "email"
KIND_PHONE: Final = "phone"
_PII_KINDS: Final = frozenset({KIND_EMAIL, KIND_PHONE})

# Nesting deeper than this is pathological for an audit event; rather than risk a
# RecursionError on the ingest path the subtree is redacted (fail closed).
_MAX_DEPTH: Final = 100


class PiiFinding(msgspec.Struct, frozen=True):
    """One piece of PII that was masked in an event."""

    path: str  # JSON-pointer-like location: "message", "metadata/user/email", ...
    kind: str  # "email" | "phone"
    original: str  # the original matched substring (not the whole field)
    masked: str  # what replaced it


class MaskResult(msgspec.Struct):
    """The masked copy of an event plus what was found in it."""

    message: str | None
    metadata: dict[str, Any] | None
    before_state: dict[str, Any] | None
    after_state: dict[str, Any] | None
    pii: list[PiiFinding]
    redactions: int  # how many secrets were redacted


# --------------------------------------------------------------------------- keys

_KEY_PLAIN: Final = 0
_KEY_SECRET: Final = 1
_KEY_EMAIL: Final = 2
_KEY_PHONE: Final = 3

_KEY_STRIP: Final = str.maketrans("", "", "-_. ")

# Normalised (lower-cased, without "-", "_", "." and spaces) key names whose value is a
# secret.  Card-number-like keys are secrets too.
_SECRET_KEYS: Final = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "secret",
        "clientsecret",
        "apisecret",
        "token",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "authtoken",
        "sessiontoken",
        "apikey",
        "authorization",
        "proxyauthorization",
        "auth",
        "cookie",
        "setcookie",
        "privatekey",
        "secretkey",
        "accesskey",
        "secretaccesskey",
        "credential",
        "credentials",
        "cardnumber",
        "creditcard",
        "creditcardnumber",
        "ccnumber",
        "cardno",
        "cc",
        "cvv",
        "cvv2",
        "cvc",
        "cvc2",
        "pin",
        "ssn",
        "otp",
        "totp",
    }
)
# Strong names: a key that merely *ends* with one of these is a secret as well
# ("dbpassword", "githubtoken", "stripesecretkey").  Weak names such as "pass", "pin",
# "auth" or "cc" only match exactly ("compass", "mapping" and "bcc" are not secrets).
_SECRET_KEY_SUFFIXES: Final = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "secretkey",
    "accesskey",
    "credential",
    "credentials",
    "authorization",
    "cookie",
    "cardnumber",
    "creditcard",
    "cvv",
    "cvc",
    "ssn",
)
_EMAIL_KEYS: Final = frozenset({"email", "mail", "emailaddress"})
_EMAIL_KEY_SUFFIXES: Final = ("email", "emailaddress")
_PHONE_KEYS: Final = frozenset(
    {
        "phone",
        "phonenumber",
        "phoneno",
        "mobile",
        "mobilephone",
        "mobilenumber",
        "tel",
        "telephone",
        "cellphone",
        "homephone",
        "workphone",
        "contactphone",
    }
)
_PHONE_KEY_SUFFIXES: Final = ("phonenumber", "phoneno", "mobilenumber", "telephone")

# Words of a key name (after camelCase splitting) that name a secret when they end the key:
# "db_pass", "userPass", "access_token", "basic_auth" ("password_changed" ends in "changed").
_SECRET_WORDS: Final = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "passphrase",
        "passcode",
        "pwd",
        "pw",
        "secret",
        "token",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "cookie",
        "apikey",
        "pin",
        "otp",
        "totp",
        "cvv",
        "cvc",
        "ssn",
    }
)
# "key" alone is an identifier ("resource_key", "sort_key", "public_key"); after one of
# these it is a credential.
_KEY_QUALIFIERS: Final = frozenset(
    {
        "api",
        "private",
        "secret",
        "access",
        "encryption",
        "decryption",
        "signing",
        "sign",
        "master",
        "client",
        "hmac",
        "aes",
        "rsa",
        "ssh",
        "gpg",
        "pgp",
        "license",
        "licence",
        "shared",
        "storage",
        "account",
        "subscription",
        "session",
        "auth",
        "webhook",
        "consumer",
        "crypto",
        "data",
        "wrapping",
    }
)
# A last word that only says how a secret is represented: look through it ("password_hash").
_VALUE_TAILS: Final = frozenset(
    {
        "value",
        "hash",
        "digest",
        "plain",
        "plaintext",
        "raw",
        "enc",
        "encrypted",
        "b64",
        "base64",
        "hex",
        "str",
        "string",
    }
)
_KEY_WORD_RE: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", re.ASCII)

_key_cache: dict[str, int] = {}
_KEY_CACHE_MAX: Final = 8192


def _names_secret(key: str) -> bool:
    """True if the last word of ``key`` (camelCase, ``_``, ``-``, ``.`` split) names a secret."""
    words = _KEY_WORD_RE.findall(key)
    if not words:
        return False
    last = words[-1].lower()
    if last in _VALUE_TAILS and len(words) > 1:
        words.pop()
        last = words[-1].lower()
    if last in _SECRET_WORDS:
        return True
    return last == "key" and len(words) > 1 and words[-2].lower() in _KEY_QUALIFIERS


def _classify_key_uncached(key: str) -> int:
    if not key.isascii():
        key = unicodedata.normalize("NFKC", key)
    norm = key.lower().translate(_KEY_STRIP)
    if norm in _SECRET_KEYS or norm.endswith(_SECRET_KEY_SUFFIXES) or _names_secret(key):
        return _KEY_SECRET
    if norm in _EMAIL_KEYS or norm.endswith(_EMAIL_KEY_SUFFIXES):
        return _KEY_EMAIL
    if norm in _PHONE_KEYS or norm.endswith(_PHONE_KEY_SUFFIXES):
        return _KEY_PHONE
    return _KEY_PLAIN


def _classify_key(key: str) -> int:
    # Key names repeat constantly across events, so memoise (bounded: keys are tenant input).
    kind = _key_cache.get(key)
    if kind is None:
        kind = _classify_key_uncached(key)
        if len(_key_cache) < _KEY_CACHE_MAX:
            _key_cache[key] = kind
    return kind


# ------------------------------------------------------------------------ patterns

# Secret formats other than card numbers.  Each pattern has its own pass, gated by a
# substring pre-check (see ``_redact_secrets``), so ordinary text never hits a regex.
_PEM_RE: Final = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----"
    r"(?:.*?-----END[A-Z0-9 ]*PRIVATE KEY-----|.*)",  # a truncated block: redact to the end
    re.ASCII | re.DOTALL,
)
# scheme://user:password@host -- only the password is redacted.
_URL_CREDENTIALS_RE: Final = re.compile(r"://[^\s:/?#@]+:(?P<password>[^\s/?#@]+)@", re.ASCII)
# No preceding space needed ("Bearer%20eyJ...", "id_eyJ..."); only a letter glued in front
# ("heyJoe.x.y") disqualifies.
_JWT_RE: Final = re.compile(r"eyJ(?<![A-Za-z]eyJ)[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*", re.ASCII)
_KEY_FORMATS_RE: Final = re.compile(
    r"""
    (?P<aws_access_key>\b(?:AKIA|ASIA)[A-Z0-9]{16}\b)
  | (?P<github_token>\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}))
  | (?P<slack_token>\bxox[abpr]-[A-Za-z0-9\-]{10,})
  | (?P<stripe_key>\b[rs]k_(?:live|test)_[A-Za-z0-9]{10,})
  | (?P<google_api_key>\bAIza[A-Za-z0-9_\-]{30,})
    """,
    re.VERBOSE | re.ASCII,
)
# password=..., token: ..., "api_key": "...", Authorization: Bearer ... -- only the value
# is redacted.  Weak words (pass, pw, pwd, auth, cookie) must start a word ("compass: north").
# The patterns below are matched against the *lower-cased*, width-folded text (an order of
# magnitude faster than re.IGNORECASE); the spans are then applied to the original text.
# The ``_CI`` variants are the fallback for the rare text whose length changes when lowered.
_CREDENTIAL_NAME_SOURCE: Final = r"""
    (?:
        pass(?:word|wd|phrase|code) | secret | token | credentials? | authorization
      | (?:api|private|secret|access|encryption|decryption|signing|master|client|hmac|ssh|license
          |licence|storage|account|subscription|session)[_\-]?key
      | p(?<![a-z0-9].)(?:ass|wd|w) | a(?<![a-z0-9].)uth | c(?<![a-z0-9].)ookie
    )
"""
_KEY_VALUE_TAIL_SOURCE: Final = r"""
    (?:\\?["'])?[ \t]*(?:=>|[:=])[ \t]*                  # closing quote may be JSON-escaped; Ruby's =>
    (?:(?:bearer|basic|token|digest)[ \t]+)?              # keep an auth scheme, redact its value
    (?:
        \\"(?P<eq>(?:[^"\\\n]|\\[^"\n])*)(?:\\")?         # {\"password\": \"...\"} inside a string
      | "(?P<dq>(?:[^"\\\n]|\\.)*)"?                      # an unterminated quote runs to the line end
      | '(?P<sq>(?:[^'\\\n]|\\.)*)'?
      | (?P<bare>[^\s&,;"'<>\\][^\s&,;"'<>]*)
    )
"""
_KEY_VALUE_SOURCE: Final = _CREDENTIAL_NAME_SOURCE + _KEY_VALUE_TAIL_SOURCE
_KEY_VALUE_RE: Final = re.compile(_KEY_VALUE_SOURCE, re.VERBOSE | re.ASCII)
_KEY_VALUE_RE_CI: Final = re.compile(_KEY_VALUE_SOURCE, re.VERBOSE | re.ASCII | re.IGNORECASE)
# camelCase keys ending in a weak word ("userPass=...", "dbPwd: ..."), on the original case.
_CAMEL_KEY_VALUE_RE: Final = re.compile(
    r"(?<=[a-z])(?-i:Pass|Pwd|Pw|Auth|Cookie|PASS|PWD|PW|AUTH)" + _KEY_VALUE_TAIL_SOURCE,
    re.VERBOSE | re.ASCII | re.IGNORECASE,
)
# Command lines: "mysql --password hunter2", "--db-pass 'a b'", "-token xyz".
_CLI_SOURCE: Final = (
    r"-(?<![\w\-]-)-?(?:[a-z0-9]+[\-_])*"
    + _CREDENTIAL_NAME_SOURCE
    + r"""[ \t]+(?:"(?P<dq>[^"\n]*)"|'(?P<sq>[^'\n]*)'|(?P<bare>[^\s\-"'<>\\][^\s"'<>]*))"""
)
_CLI_RE: Final = re.compile(_CLI_SOURCE, re.VERBOSE | re.ASCII)
_CLI_RE_CI: Final = re.compile(_CLI_SOURCE, re.VERBOSE | re.ASCII | re.IGNORECASE)
# XML elements: "<Password>hunter2</Password>", "<ns:api_key>...</ns:api_key>".
_XML_SOURCE: Final = (
    r"<(?:[a-z0-9_.\-]+:)?[a-z0-9_.\-]*?" + _CREDENTIAL_NAME_SOURCE + r"(?:[ \t][^<>]*)?>(?P<xml>[^<]+)<"
)
_XML_RE: Final = re.compile(_XML_SOURCE, re.VERBOSE | re.ASCII)
_XML_RE_CI: Final = re.compile(_XML_SOURCE, re.VERBOSE | re.ASCII | re.IGNORECASE)
# Values next to a secret-looking key that reveal nothing ("has_password=true").
_KEY_VALUE_HARMLESS: Final = frozenset({"true", "false", "null", "none", "nil"})
# A standalone "Bearer <token>" / "Basic <base64>" outside a key-value pair; no word
# boundary needed in front ("x_Bearer ...", "%20Bearer ...").
_AUTH_HEADER_SOURCE: Final = r"(?<![a-z])(?P<scheme>bearer|basic)[ \t]+(?P<credential>[a-z0-9\-._~+/]+=*)"
_AUTH_HEADER_RE: Final = re.compile(_AUTH_HEADER_SOURCE, re.ASCII)
_AUTH_HEADER_RE_CI: Final = re.compile(_AUTH_HEADER_SOURCE, re.ASCII | re.IGNORECASE)

# Non-breaking and other Unicode spaces, and the full-width ASCII block (U+FF01-U+FF5E),
# folded one-to-one onto ASCII so offsets into the folded view stay valid.
_WIDTH_FOLD: Final[dict[int, int]] = {
    **dict.fromkeys((0x00A0, 0x1680, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000), 0x20),
    **{c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)},
}

# Encodings that hide a secret from the plain patterns: percent-encoding of ASCII, runs of
# backslashes before a quote (escaped JSON at any depth), \u00XX, HTML quote entities.
# Each escape decodes to exactly one character (see ``_decoded_view``).
_ESCAPE_RE: Final = re.compile(
    r"%(?P<pct>[0-7][0-9A-Fa-f])|\\u00(?P<uni>[0-7][0-9A-Fa-f])|\\+(?P<quote>[\"'])"
    r"|&(?P<entity>quot|apos|amp|lt|gt|\#34|\#39|\#x22|\#x27);",
    re.ASCII,
)
_ENTITIES: Final = {
    "quot": '"',
    "apos": "'",
    "amp": "&",
    "lt": "<",
    "gt": ">",
    "#34": '"',
    "#39": "'",
    "#x22": '"',
    "#x27": "'",
}
# Stands in for a redacted character in a decoded view (same length, so spans map back).
_PAD: Final = "\ue000"
_PAD_RUN_RE: Final = re.compile(_PAD + "+")
_MAX_DECODE_ROUNDS: Final = 3  # "%2522" is "%22" is '"'

# Payment cards: a contiguous run of 13-19 digits, 4-4-4-x groups, or Amex/Diners 4-6-x.
# Luhn, length and network prefix are checked in code.  Contiguous runs must start with 2-9
# (all major networks): this keeps millisecond/nanosecond epochs and snowflake ids (leading
# 1) out; they may be glued to a label ("PAN-4111...", "card_4111...") but not to other
# letters or digits.  Patterns below consume their first character before the look-behind,
# which lets the regex engine skip quickly to candidate positions.
_CARD_RE: Final = re.compile(
    r"""
    \d(?<![0-9A-Za-z+.].)
    (?:
        (?<=[2-9])\d{12,18}
      | (?<![\-_].)\d{3}(?P<sep>[ \-])\d{4}(?P=sep)\d{4}(?P=sep)\d{1,4}(?:(?P=sep)\d{1,3})?
      | (?<![\-_].)\d{3}[ \-]\d{6}[ \-]\d{4,5}
    )
    (?!\w|\.\d)
    """,
    re.VERBOSE | re.ASCII,
)

_EMAIL_RE: Final = re.compile(
    r"""
    [A-Za-z0-9](?<![A-Za-z0-9._%+\-].)
    [A-Za-z0-9._%+\-]*                                  # no "*": masked locals never re-match
    @
    (?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+
    [A-Za-z]{2,63}
    (?![A-Za-z0-9\-])
    """,
    re.VERBOSE | re.ASCII,
)

# Phones: international "+" numbers (8-15 digits), North-American national formats, and
# trunk-prefix national formats ("020 7946 0958", "07911 123456", "0912345678"; digit count
# checked in code).  National formats need separators and may not start inside a dotted, dashed or
# slashed token nor end inside a dotted, dashed, slashed or colon-separated one, which
# keeps dates, times, UUIDs, IP addresses, version numbers and timestamps out.  No capture
# groups: every alternative starts with a literal or a character class, which lets the
# regex engine skip quickly to candidate positions.
_PHONE_RE: Final = re.compile(
    r"""
    (?:
        \+(?<![\w+].)\d(?:[ .\-()]{0,2}\d){7,14}                                 # +44 20 7946 0958
      | \((?<![\w+].)(?<!\w[.\-/].)\d{3}\)[ ]?\d{3}[ .\-]\d{4}                   # (555) 123-4567
      | [2-9](?<![\w+].)(?<!\w[.\-/].)\d\d[ .\-]\d{3}[ .\-]\d{4}                 # 555-123-4567
      | 1(?<![\w+].)(?<!\w[.\-/].)[ .\-](?:\(\d{3}\)[ ]?|\d{3}[ .\-])\d{3}[ .\-]\d{4}  # 1-555-...
      | 0(?<![\w+].)(?<!\w[.\-/].)(?:\d{1,4}[ \-]\d{3,4}[ \-]?\d{3,4}               # 020 7946 0958
                                   | [1-9]\d{8,10})                                  # 0912345678
    )
    (?!\w|[.\-:/]\w)
    """,
    re.VERBOSE | re.ASCII,
)

# Whole values that are common in audit metadata and can never hold a secret or PII
# (UUIDs, ISO-8601 dates/timestamps, IPv4 addresses) skip the scanning passes entirely.
_INERT_RE: Final = re.compile(
    r"""
    [0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}
  | \d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+\-]\d{2}:?\d{2})?)?
  | \d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}
    """,
    re.VERBOSE | re.ASCII,
)
_INERT_MAX_LEN: Final = 40

_DIGIT_BYTES: Final = b"0123456789"
_CARD_MIN_DIGITS: Final = 13
_PHONE_MIN_DIGITS: Final = 8
_NATIONAL_MIN_DIGITS: Final = 9
_MIN_INTERESTING_LEN: Final = 5  # shorter strings cannot hold any pattern ("pwd=x")

# Luhn: value of a digit when it is doubled.
_LUHN_DOUBLE: Final = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)

# (start, end, kind, replacement) of one hit inside a string.
_Hit = tuple[int, int, str, str]
# (kind, original, replacement) as reported to callers.
_Found = tuple[str, str, str]
# Decides whether a match (against ``text`` or its lower-cased twin) is a hit.
_HitFn = Callable[[re.Match[str], str], _Hit | None]


def _count_digits(text: str) -> int:
    # bytes.translate is several times faster than any str-level digit count.
    raw = text.encode("utf-8", "surrogatepass")
    return len(raw) - len(raw.translate(None, _DIGIT_BYTES))


def _card_digits_ok(digits: str) -> bool:
    """Length, network prefix and Luhn of a candidate card number (digits only)."""
    if not 13 <= len(digits) <= 19:
        return False
    if digits[0] == "2" and not (len(digits) == 16 and "2221" <= digits[:4] <= "2720"):
        return False  # 2-series Mastercard only; "2026..." is a timestamp, not a card
    return _luhn_ok(digits)


_CARD_INT_MIN: Final = 10**12
_CARD_INT_MAX: Final = 10**16


def _is_card_int(value: int) -> bool:
    """A JSON number that is a card number (13-16 digits, leading 2-9, network prefix, Luhn)."""
    if not _CARD_INT_MIN <= value < _CARD_INT_MAX:
        return False
    digits = str(value)
    return digits[0] != "1" and _card_digits_ok(digits)


def _looks_like_credential(value: str) -> bool:
    """The value of a ``[name, value]`` pair whose name is a secret key: a credential, not a word."""
    if not value or value.startswith(REDACTED):
        return False
    if value[:7].lower() in ("bearer ", "basic ", "token ", "digest "):
        return True
    return any(c.isdigit() for c in value) or (len(value) >= 16 and " " not in value)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        total += _LUHN_DOUBLE[d] if i & 1 else d
    return total % 10 == 0


def _is_basic_credential(value: str) -> bool:
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded


def _looks_like_bearer(value: str) -> bool:
    # "Bearer tokens expire" is prose; a real token is long or has digits.
    return len(value) >= 20 or (len(value) >= 8 and any(c.isdigit() for c in value))


# ------------------------------------------------------------------------ handlers


def _whole_hit(kind: str) -> _HitFn:
    def hit(m: re.Match[str], text: str) -> _Hit | None:
        return m.start(), m.end(), kind, REDACTED

    return hit


_private_key_hit: Final = _whole_hit("private_key")
_jwt_hit: Final = _whole_hit("jwt")


def _key_format_hit(m: re.Match[str], text: str) -> _Hit | None:
    return m.start(), m.end(), m.lastgroup or "secret", REDACTED


def _url_credentials_hit(m: re.Match[str], text: str) -> _Hit | None:
    start, end = m.span("password")
    if text.startswith((REDACTED, _PAD), start):
        return None
    return start, end, "url_password", REDACTED


def _key_value_hit(m: re.Match[str], text: str) -> _Hit | None:
    # The value group (eq, dq, sq, bare or xml) is the last named group of every such pattern.
    start, end = m.span(m.lastgroup or 0)
    value = text[start:end].strip()
    if not value or value.startswith((REDACTED, _PAD)) or value.lower() in _KEY_VALUE_HARMLESS:
        return None
    return start, end, "secret", REDACTED


def _auth_header_hit(m: re.Match[str], text: str) -> _Hit | None:
    start, end = m.span("credential")
    credential = text[start:end]
    if m.group("scheme").lower() == "basic":
        if not _is_basic_credential(credential):
            return None
    elif not _looks_like_bearer(credential) and not (m.start() == 0 and end == len(text) and len(credential) >= 8):
        return None  # prose ("Bearer tokens expire"), unless the string is just "Bearer <credential>"
    return start, end, "auth_header", REDACTED


def _card_hit(m: re.Match[str], text: str) -> _Hit | None:
    digits = m.group().replace(" ", "").replace("-", "")
    if not _card_digits_ok(digits):
        return None
    return m.start(), m.end(), "card", REDACTED


def _email_hit(m: re.Match[str], text: str) -> _Hit | None:
    original = m.group()
    return m.start(), m.end(), KIND_EMAIL, mask_email(original)


def _phone_hit(m: re.Match[str], text: str) -> _Hit | None:
    original = m.group()
    if original[0] == "0" and not 9 <= _count_digits(original) <= 12:  # trunk-prefix format
        return None
    return m.start(), m.end(), KIND_PHONE, mask_phone(original)


def _apply(
    pattern: re.Pattern[str],
    text: str,
    hit: _HitFn,
    out: list[_Found],
    haystack: str | None = None,
    pad: bool = False,
) -> str:
    """Replace every accepted hit of ``pattern`` in ``text`` and record it in ``out``.

    ``haystack`` (same length as ``text``, e.g. its lower-cased form) is what the pattern
    runs on, if given; replacements always apply to ``text``.  With ``pad`` a hit becomes
    as many ``_PAD`` characters as it is long, so offsets stay valid (see ``_redact_encoded``).
    """
    parts: list[str] | None = None
    last = 0
    for m in pattern.finditer(text if haystack is None else haystack):
        found = hit(m, text)
        if found is None:
            continue
        start, end, kind, replacement = found
        if parts is None:
            parts = []
        parts.append(text[last:start])
        parts.append(_PAD * (end - start) if pad else replacement)
        out.append((kind, text[start:end], replacement))
        last = end
    if parts is None:
        return text
    parts.append(text[last:])
    return "".join(parts)


def _apply_folded(
    pattern: re.Pattern[str],
    fallback: re.Pattern[str],
    text: str,
    view: str,
    lowered: str,
    hit: _HitFn,
    out: list[_Found],
    pad: bool,
) -> str:
    """Run lower-case ``pattern`` on ``lowered``, or IGNORECASE ``fallback`` on ``view`` if lowering moved offsets.

    ``view`` is ``text`` width-folded (same length); replacements apply to ``text``.
    """
    if len(lowered) == len(text):
        return _apply(pattern, text, hit, out, lowered, pad)
    return _apply(fallback, text, hit, out, view, pad)


def _views(text: str) -> tuple[str, str]:
    """``text`` width-folded (one-to-one, see ``_WIDTH_FOLD``) and that lower-cased."""
    view = text if text.isascii() else text.translate(_WIDTH_FOLD)
    return view, view.lower()


def _redact_secrets(text: str, out: list[_Found], pad: bool = False) -> str:
    """Redact every secret format except card numbers, one cheaply gated pass per format."""
    if "-----BEGIN" in text:
        text = _apply(_PEM_RE, text, _private_key_hit, out, None, pad)
    if "://" in text and "@" in text:
        text = _apply(_URL_CREDENTIALS_RE, text, _url_credentials_hit, out, None, pad)
    if "eyJ" in text:
        text = _apply(_JWT_RE, text, _jwt_hit, out, None, pad)
    if (
        "AKIA" in text
        or "ASIA" in text
        or "xox" in text
        or "AIza" in text
        or "k_live_" in text
        or "k_test_" in text
        or ("gh" in text and "_" in text)
    ):
        text = _apply(_KEY_FORMATS_RE, text, _key_format_hit, out, None, pad)
    view = text if text.isascii() else text.translate(_WIDTH_FOLD)
    has_separator = "=" in view or ":" in view
    has_space = " " in view or "\t" in view
    has_element = "<" in view and "</" in view
    if not (has_separator or has_space or has_element):
        return text
    lowered = view.lower()
    if (
        "pass" in lowered
        or "secret" in lowered
        or "token" in lowered
        or "key" in lowered
        or "auth" in lowered
        or "credential" in lowered
        or "pw" in lowered
        or "cookie" in lowered
    ):
        passes: list[tuple[re.Pattern[str], re.Pattern[str]]] = []
        if has_separator:
            passes.append((_KEY_VALUE_RE, _KEY_VALUE_RE_CI))
        if has_space and (" -" in view or view[0] == "-"):
            passes.append((_CLI_RE, _CLI_RE_CI))
        if has_element:
            passes.append((_XML_RE, _XML_RE_CI))
        for pattern, fallback in passes:
            redacted = _apply_folded(pattern, fallback, text, view, lowered, _key_value_hit, out, pad)
            if redacted is not text:
                text = redacted
                view, lowered = _views(text)
        if has_separator and ("P" in view or "Au" in view or "Cookie" in view):
            redacted = _apply(_CAMEL_KEY_VALUE_RE, text, _key_value_hit, out, view, pad)
            if redacted is not text:
                text = redacted
                view, lowered = _views(text)
    if "bearer" in lowered or "basic" in lowered:
        text = _apply_folded(_AUTH_HEADER_RE, _AUTH_HEADER_RE_CI, text, view, lowered, _auth_header_hit, out, pad)
    return text


def _decoded_view(text: str) -> tuple[str, list[int]] | None:
    """``text`` with one round of escapes decoded, and for each character where it starts in ``text``.

    The position list has one more entry (``len(text)``), so a span ``[i, j)`` of the view is
    ``[pos[i], pos[j])`` of ``text``.  ``None`` if there is nothing to decode.
    """
    parts: list[str] = []
    pos: list[int] = []
    last = 0
    for m in _ESCAPE_RE.finditer(text):
        start = m.start()
        parts.append(text[last:start])
        pos.extend(range(last, start))
        kind = m.lastgroup
        if kind == "quote":
            parts.append(m.group("quote"))
        elif kind == "entity":
            parts.append(_ENTITIES[m.group("entity")])
        else:
            parts.append(chr(int(m.group(kind or "pct"), 16)))
        pos.append(start)
        last = m.end()
    if not pos and last == 0:
        return None
    parts.append(text[last:])
    pos.extend(range(last, len(text) + 1))
    return "".join(parts), pos


def _redact_encoded(text: str, out: list[_Found]) -> str:
    """Find secrets hidden by percent-encoding or escaping, and redact them in ``text`` as written.

    The secret passes run on a decoded view (up to ``_MAX_DECODE_ROUNDS`` rounds, for doubly
    encoded text) with same-length padding for hits; each padded run maps back to the span of
    ``text`` it came from, which becomes ``[REDACTED]`` (the escapes around it stay).
    """
    decoded = _decoded_view(text)
    if decoded is None:
        return text
    view, pos = decoded
    for _ in range(_MAX_DECODE_ROUNDS - 1):
        again = _decoded_view(view)
        if again is None:
            break
        view, inner = again
        pos = [pos[i] for i in inner]
    before = len(out)
    padded = _redact_secrets(view, out, pad=True)
    if len(out) == before:
        return text
    parts: list[str] = []
    last = 0
    for m in _PAD_RUN_RE.finditer(padded):
        start, end = m.span()
        if view[start:end] == padded[start:end]:
            continue  # the text itself holds U+E000 here
        parts.append(text[last : pos[start]])
        parts.append(REDACTED)
        last = pos[end]
    parts.append(text[last:])
    return "".join(parts)


# Strings found to hold nothing to mask, remembered: audit events repeat the same user
# agents, paths, states and labels over and over.  Only the verdict "nothing here" is kept
# (never a secret: a string with a hit is not added), for strings up to _CLEAN_MAX_LEN
# characters; the set is emptied when full, so it holds the currently common strings.
_clean_strings: set[str] = set()
_CLEAN_MAX: Final = 16384
_CLEAN_MAX_LEN: Final = 256


def _mask_str(text: str, out: list[_Found]) -> str:
    """Mask one string: secrets first, then PII.  Returns ``text`` itself if unchanged."""
    if len(text) < _MIN_INTERESTING_LEN or text in _clean_strings:
        return text
    masked = _scan_str(text, out)
    if masked is text and len(text) <= _CLEAN_MAX_LEN:
        if len(_clean_strings) >= _CLEAN_MAX:
            _clean_strings.clear()
        _clean_strings.add(text)
    return masked


def _scan_str(text: str, out: list[_Found]) -> str:
    """``_mask_str`` without the memo of clean strings."""
    if text.isalnum():
        # No separators, "@", "+", "=" or ":": only an AWS/Google key, a bare card number or
        # a bare national phone number ("0912345678") can hide here; never an e-mail.
        if "AKIA" in text or "ASIA" in text or "AIza" in text:
            text = _apply(_KEY_FORMATS_RE, text, _key_format_hit, out)
        if len(text) >= _CARD_MIN_DIGITS and _count_digits(text) >= _CARD_MIN_DIGITS:
            text = _apply(_CARD_RE, text, _card_hit, out)
        elif text[0] == "0" and len(text) >= _NATIONAL_MIN_DIGITS and text.isdigit():
            text = _apply(_PHONE_RE, text, _phone_hit, out)
        return text
    if len(text) <= _INERT_MAX_LEN and _INERT_RE.fullmatch(text) is not None:
        return text
    text = _redact_secrets(text, out)
    if "%" in text or "\\" in text or "&" in text:
        text = _redact_encoded(text, out)
    digits = _count_digits(text) if len(text) >= _PHONE_MIN_DIGITS else 0
    if digits >= _CARD_MIN_DIGITS:
        text = _apply(_CARD_RE, text, _card_hit, out)
    if "@" in text:
        text = _apply(_EMAIL_RE, text, _email_hit, out)
    if _may_hold_phone(text, digits):
        text = _apply(_PHONE_RE, text, _phone_hit, out)
    return text


def _may_hold_phone(text: str, digits: int) -> bool:
    # International numbers need "+" and 8 digits; national formats at least 9 digits.
    return digits >= _NATIONAL_MIN_DIGITS or (digits >= _PHONE_MIN_DIGITS and "+" in text)


def _mask_str_as(text: str, key_kind: int, out: list[_Found]) -> str:
    """Mask a string found under an e-mail/phone key: mask the whole value if no pattern hit."""
    before = len(out)
    masked = _mask_str(text, out)
    if len(out) != before or not masked or REDACTED in masked:
        return masked
    kind, forced = (KIND_EMAIL, mask_email(masked)) if key_kind == _KEY_EMAIL else (KIND_PHONE, mask_phone(masked))
    if forced == masked:
        return masked
    out.append((kind, masked, forced))
    return forced


# ---------------------------------------------------------------------- public API


def _mask_part(part: str) -> str:
    if not part or part[0] == "*":
        return "***"
    return part[0] + "***"


def mask_email(email: str) -> str:
    """Mask an e-mail address deterministically: ``john@example.com`` -> ``j***@e***.com``.

    The first character of the local part and of the first domain label survive, as does
    the top-level domain.  A value without ``@`` is masked like a local part.  Idempotent.
    """
    if not email:
        return email
    local, at, domain = email.rpartition("@")
    if not at:
        return _mask_part(email)
    first_label, dot, _ = domain.partition(".")
    masked_domain = _mask_part(first_label)
    if dot:
        masked_domain += "." + domain.rpartition(".")[2]
    return f"{_mask_part(local)}@{masked_domain}"


def mask_phone(phone: str) -> str:
    """Mask a phone number: every digit but the last two becomes ``*``, separators stay.

    ``+1 (555) 123-4567`` -> ``+* (***) ***-**67``.  Idempotent.
    """
    total = _count_digits(phone)
    if total <= 2:
        return phone
    hide = total - 2
    chars: list[str] = []
    seen = 0
    for ch in phone:
        if "0" <= ch <= "9":
            chars.append("*" if seen < hide else ch)
            seen += 1
        else:
            chars.append(ch)
    return "".join(chars)


def mask_text(text: str) -> tuple[str, list[tuple[str, str, str]]]:
    """Mask secrets and PII in a free string.

    Returns the masked string and ``(kind, original, masked)`` for every hit.  PII kinds
    are ``"email"`` and ``"phone"``; every other kind (``"card"``, ``"jwt"``,
    ``"secret"``, ``"url_password"``, ...) is a redacted secret whose ``original`` must
    not be persisted.
    """
    out: list[_Found] = []
    return _mask_str(text, out), out


def contains_unmasked_pii(text: str) -> bool:
    """True if ``text`` still contains something that looks like an e-mail or phone number."""
    if "@" in text and _EMAIL_RE.search(text) is not None:
        return True
    if len(text) >= _PHONE_MIN_DIGITS and _may_hold_phone(text, _count_digits(text)):
        return any(_phone_hit(m, text) is not None for m in _PHONE_RE.finditer(text))
    return False


_SCALARS: Final = frozenset({int, float, bool, type(None)})


class _Walk:
    """Per-event accumulator for the walk over the JSON fields."""

    __slots__ = ("found", "pii", "redactions")

    def __init__(self) -> None:
        self.pii: list[PiiFinding] = []
        self.redactions = 0
        self.found: list[_Found] = []  # scratch buffer for the string being masked

    def flush(self, path: str) -> None:
        for kind, original, masked in self.found:
            if kind in _PII_KINDS:
                self.pii.append(PiiFinding(path=path, kind=kind, original=original, masked=masked))
            else:
                self.redactions += 1
        self.found.clear()

    def string(self, text: str, key_kind: int, parent: str, key: Any) -> str:
        if key_kind in (_KEY_EMAIL, _KEY_PHONE):
            masked = _mask_str_as(text, key_kind, self.found)
        else:
            masked = _mask_str(text, self.found)
        if self.found:
            self.flush(_child(parent, key))
        return masked

    def redact(self, value: Any) -> Any:
        """Value under a secret key: anything but None/bool/"" becomes ``[REDACTED]``."""
        if value is None or isinstance(value, bool) or value == "" or value == REDACTED:
            return value
        self.redactions += 1
        return REDACTED

    def phone_number(self, value: int, parent: str, key: Any) -> str:
        original = str(value)
        masked = mask_phone(original)
        if masked != original:
            self.pii.append(PiiFinding(path=_child(parent, key), kind=KIND_PHONE, original=original, masked=masked))
        return masked

    def value(self, value: Any, key_kind: int, parent: str, key: Any, depth: int) -> Any:
        """Mask one non-secret value (string, container or scalar)."""
        vtype = type(value)
        if vtype is str:
            return self.string(value, key_kind, parent, key)
        if vtype is int:
            if value >= _CARD_INT_MIN and _is_card_int(value):
                self.redactions += 1
                return REDACTED
            if key_kind == _KEY_PHONE:
                return self.phone_number(value, parent, key)
            return value
        if vtype in _SCALARS:
            return value
        if vtype is dict or vtype is list or isinstance(value, Mapping | list | tuple):
            if depth >= _MAX_DEPTH:
                self.redactions += 1
                return REDACTED
            if isinstance(value, Mapping):
                return self.mapping(value, _child(parent, key), depth + 1)
            return self.sequence(value, _child(parent, key), depth + 1, key_kind)
        if isinstance(value, str):  # str subclasses, e.g. StrEnum members
            return self.string(str(value), key_kind, parent, key)
        return value

    def mapping(self, data: Mapping[Any, Any], path: str, depth: int) -> dict[Any, Any]:
        # Flat dicts (the common case) are handled entirely in this loop: only nested
        # containers recurse.
        result: dict[Any, Any] = {}
        for key, value in data.items():
            key_kind = _classify_key(key) if type(key) is str else _KEY_PLAIN
            if key_kind == _KEY_SECRET:
                result[key] = self.redact(value)
            elif type(value) is str and key_kind == _KEY_PLAIN:
                masked = _mask_str(value, self.found)
                if self.found:
                    self.flush(_child(path, key))
                result[key] = masked
            else:
                result[key] = self.value(value, key_kind, path, key, depth)
        return result

    def sequence(self, items: list[Any] | tuple[Any, ...], path: str, depth: int, key_kind: int) -> list[Any]:
        # List items inherit the e-mail/phone meaning of the key that holds the list.
        result = [self.value(item, key_kind, path, index, depth) for index, item in enumerate(items)]
        if len(items) == 2 and type(items[0]) is str and type(items[1]) is str:
            # A [name, value] pair, e.g. a header: ["Authorization", "Bearer ..."].
            name, value = items
            if _classify_key(name) == _KEY_SECRET and _looks_like_credential(result[1]):
                result[1] = self.redact(value)
        return result


def _child(parent: str, key: Any) -> str:
    # JSON-pointer escaping (RFC 6901) so a "/" inside a key cannot fake a path.
    key = str(key)
    if "~" in key or "/" in key:
        key = key.replace("~", "~0").replace("/", "~1")
    return f"{parent}/{key}"


def mask_event(
    message: str | None,
    metadata: Mapping[str, Any] | None,
    before_state: Mapping[str, Any] | None,
    after_state: Mapping[str, Any] | None,
) -> MaskResult:
    """Return a masked copy of an audit event's free-text and JSON fields.

    Secrets are replaced by ``[REDACTED]`` (counted in ``redactions``); e-mail addresses
    and phone numbers are masked and reported in ``pii`` with their originals and
    JSON-pointer-like paths.  The inputs are never mutated; containers are always new.
    """
    walk = _Walk()
    masked_message = message
    if message is not None:
        masked_message = _mask_str(message, walk.found)
        if walk.found:
            walk.flush("message")
    return MaskResult(
        message=masked_message,
        metadata=None if metadata is None else walk.mapping(metadata, "metadata", 1),
        before_state=None if before_state is None else walk.mapping(before_state, "before_state", 1),
        after_state=None if after_state is None else walk.mapping(after_state, "after_state", 1),
        pii=walk.pii,
        redactions=walk.redactions,
    )
