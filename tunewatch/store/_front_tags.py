"""``TagsFront``: the store's version tags.

The part of :class:`~._store.Store` that reads and changes people's key/value tags on
model versions: each method opens one transaction and delegates to ``_version_tags``.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import _version_tags
from ._front_base import StoreFront
from ._version_tags import VersionTag


class TagsFront(StoreFront):
    """Version tags (``_version_tags``)."""

    def set_version_tag(
        self, model: str, version: int, key: str, value: str, *, actor: str
    ) -> bool:
        """Set tag ``key`` of the version to ``value``, audited (``set_tag``) in the same
        transaction; ``False``, nothing written, when it holds ``value`` already.
        ``TagRuleError`` for a tag outside the convention (:mod:`tunewatch._tag_rules`),
        ``NotFoundError`` for a missing model or version."""
        with self._tx("set_version_tag") as conn:
            return _version_tags.set_version_tag(conn, model, version, key, value, actor=actor)

    def delete_version_tag(self, model: str, version: int, key: str, *, actor: str) -> str:
        """Delete tag ``key`` of the version, audited (``delete_tag``) in the same
        transaction, and return its value; ``NotFoundError`` (``tag_not_found``) when the
        version has none."""
        with self._tx("delete_version_tag") as conn:
            return _version_tags.delete_version_tag(conn, model, version, key, actor=actor)

    def version_tags(self, model: str, version: int) -> list[VersionTag]:
        """The version's tags by key, each with who set it and when."""
        with self._read("version_tags") as conn:
            return _version_tags.list_version_tags(conn, model, version)

    def deleted_tag_keys(self, model: str, version: int) -> set[str]:
        """The keys of the version's tags someone deleted (from the audit log)."""
        with self._read("deleted_tag_keys") as conn:
            return _version_tags.deleted_tag_keys(conn, model, version)

    def tags_of_versions(self, model: str, versions: Sequence[int]) -> dict[int, dict[str, str]]:
        """``{version: {key: value}}`` for those of ``versions`` holding tags, one read."""
        with self._read("tags_of_versions") as conn:
            return _version_tags.tags_of_versions(conn, model, versions)
