"""The one convention for version tags, checked here and nowhere else.

Tags are the key/value labels people put on a model version (``ticket=RISK-123``,
``validation=passed``), as MLflow users expect. The API, the CLI and the store all check
a tag against these rules before one is written, so a key the CLI takes is one the API
takes, and a value read back from the store is one any of them could have written:

- a key is 1 to :data:`MAX_KEY_LENGTH` characters of ``[a-z0-9._/-]``, each part between
  slashes starting with a letter or a digit: lower case only, so ``Ticket`` and
  ``ticket`` are never two tags, and every key is a path the route reaches unchanged;
- keys under :data:`RESERVED_PREFIX` are kept for tunewatch's own tags (it writes none
  yet): no one sets one now, so a tag tunewatch writes later cannot have been forged;
- a value is 0 to :data:`MAX_VALUE_LENGTH` printable characters: no NUL (PostgreSQL
  refuses one), no line break, bidi control or invisible character (a filler, a
  variation selector) that would let a value pass for other text where it is shown (the
  CLI's table, the report, the audit log);
- a version holds at most :data:`MAX_TAGS` tags, so every listing of versions with their
  tags stays bounded.

A refusal is a :class:`TagRuleError`, a ``ValueError`` whose code, ``invalid_request``,
is what the API answers (400), naming the key, the rule and the value.
"""

from __future__ import annotations

import re

from tunewatch._errors import TunewatchError

MAX_KEY_LENGTH = 64
MAX_VALUE_LENGTH = 256
MAX_TAGS = 50
RESERVED_PREFIX = "tunewatch."

# parts between slashes, each starting with a letter or digit: a dot segment (``a/../b``)
# or an empty part (``a//b``, ``a/``) is rewritten by clients and proxies before it
# reaches the route (DELETE …/tags/a/../b deleted tag ``b``)
_KEY = re.compile(r"[a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)*")
_KEY_CHARACTERS = re.compile(r"[a-z0-9._/-]*")
# Unicode's default-ignorable code points and the blank letters that render as nothing,
# which str.isprintable() lets through ("passed\u3164" showed as "passed")
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


class TagRuleError(TunewatchError, ValueError):
    """A tag outside the convention: a request to change it is refused as invalid."""

    code = "invalid_request"


def check_key(key: str) -> None:
    """Refuse a ``key`` outside the convention."""
    shown = repr(key[:80])
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise TagRuleError(
            f"tag key must be 1 to {MAX_KEY_LENGTH} characters, got {len(key)}: {shown}"
        )
    if not _KEY_CHARACTERS.fullmatch(key):
        raise TagRuleError(
            f"tag key must hold only the characters [a-z0-9._/-] (lower case), got {shown}"
        )
    if not _KEY.fullmatch(key):
        raise TagRuleError(
            "tag key must start with a letter or digit, and so must each part between "
            f"slashes (no empty, `.` or `..` part), got {shown}"
        )
    if key.startswith(RESERVED_PREFIX):
        raise TagRuleError(
            f"tag keys starting {RESERVED_PREFIX!r} are reserved for tunewatch's own tags; "
            f"choose another key than {shown}"
        )


def check_tag(key: str, value: str) -> None:
    """Refuse a tag whose ``key`` (see :func:`check_key`) or ``value`` is outside the
    convention."""
    check_key(key)
    if len(value) > MAX_VALUE_LENGTH:
        raise TagRuleError(
            f"tag `{key}`'s value must be 0 to {MAX_VALUE_LENGTH} characters, got "
            f"{len(value)}: {value[:80]!r}"
        )
    if not value.isprintable():
        raise TagRuleError(
            f"tag `{key}`'s value must hold printable characters only (no NUL, line break, "
            f"tab or other control character), got {value[:80]!r}"
        )
    if _INVISIBLE.search(value):
        raise TagRuleError(
            f"tag `{key}`'s value must hold no invisible character (a filler, a variation "
            f"selector, a joiner: it would read as other text where shown), got {value[:80]!r}"
        )


def check_count(model: str, version: int, key: str, *, held: int) -> None:
    """Refuse a new tag ``key`` on a version already holding ``held`` tags when that
    reaches :data:`MAX_TAGS`."""
    if held >= MAX_TAGS:
        raise TagRuleError(
            f"a version holds at most {MAX_TAGS} tags: {model}/v{version} has {held}, so "
            f"tag {key!r} is refused; delete one first"
        )
