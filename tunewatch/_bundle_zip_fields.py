"""The zip extra fields a bundle's members may carry.

A member's local and central headers may carry only the extra fields that say nothing of
what the member is: :data:`ALLOWED_EXTRA_FIELDS`. Info-ZIP's Unicode Path field (0x7075)
renames a member for ``unzip`` and not for zipfile, which ignores it: a crafted bundle's
``unzip -p bundle.zip manifest.json`` showed a regulated manifest, and the import read
another, unregulated one.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

#: The extra fields a member's local or central header may carry, each of which zipfile
#: and ``unzip`` read alike or neither needs to name the member: Zip64 sizes (0x0001),
#: NTFS times (0x000a), extended timestamps (0x5455) and Unix owners (0x7875), the last two
#: what Info-ZIP's ``zip`` writes. Any other is refused, Info-ZIP's Unicode Path (0x7075)
#: and Unicode Comment (0x6375) first: ``unzip`` honours them, zipfile does not.
ALLOWED_EXTRA_FIELDS: Mapping[int, str] = {
    0x0001: "Zip64",
    0x000A: "NTFS",
    0x5455: "UT",
    0x7875: "ux",
}
#: A local file header: signature, versions, flags, method, time, date, CRC-32, sizes, and
#: the lengths of the name and the extra fields that follow it.
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_LOCAL_SIGNATURE = b"PK\x03\x04"


def extra_fields_refused(archive: zipfile.ZipFile, file: BinaryIO, path: str | Path) -> str | None:
    """Why ``archive`` (``file``, at ``path``) is refused for its members' extra fields, if
    it is: a field not in :data:`ALLOWED_EXTRA_FIELDS`, or extra bytes that are not whole
    fields, in a member's central header or in its local one (read here: zipfile skips
    it). ``unzip`` reads both, and a Unicode Path field in either renames the member."""
    allowed = ", ".join(f"0x{k:04x} ({v})" for k, v in ALLOWED_EXTRA_FIELDS.items())
    for info in archive.infolist():
        local = _local_extra(file, info)
        if local is None:
            return (
                f"{str(path)!r} is not a readable bundle: member {info.filename!r} has no "
                f"whole local header at offset {info.header_offset}"
            )
        for where, extra in (("central directory entry", info.extra), ("local header", local)):
            found = _unexpected_field(extra)
            if found is not None:
                return (
                    f"{str(path)!r} is not a bundle: member {info.filename!r} carries {found} "
                    f"in its {where}; a bundle's members carry no extra field but {allowed} "
                    "(`unzip` reads a member by the name a Unicode Path field, 0x7075, gives "
                    "it, which tunewatch does not: the two would read different members)"
                )
    return None


def _local_extra(file: BinaryIO, info: zipfile.ZipInfo) -> bytes | None:
    """The extra fields of ``info``'s local header in ``file``; ``None`` where there is
    no whole local header (zipfile would refuse the member when it read it)."""
    try:
        file.seek(info.header_offset)
        header = file.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size:
            return None
        fields = _LOCAL_HEADER.unpack(header)
        if fields[0] != _LOCAL_SIGNATURE:
            return None
        name_length, extra_length = fields[-2], fields[-1]
        file.seek(info.header_offset + _LOCAL_HEADER.size + name_length)
        extra = file.read(extra_length)
    except (OSError, ValueError):  # a negative offset from a crafted directory
        return None
    return extra if len(extra) == extra_length else None


def _unexpected_field(extra: bytes) -> str | None:
    """The first extra field in ``extra`` not in :data:`ALLOWED_EXTRA_FIELDS` ("extra field
    0x7075"), or bytes that are not a whole field; ``None`` when there is neither."""
    at = 0
    while at < len(extra):
        if len(extra) - at < 4:
            return f"{len(extra) - at} stray bytes after its extra fields"
        kind, size = struct.unpack_from("<HH", extra, at)
        if at + 4 + size > len(extra):
            return f"extra field 0x{kind:04x} cut short ({size} bytes declared)"
        if kind not in ALLOWED_EXTRA_FIELDS:
            return f"extra field 0x{kind:04x}"
        at += 4 + size
    return None
