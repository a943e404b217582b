"""Reading the configuration file's text, to a bound.

``--config /dev/zero`` (or ``$TUNEWATCH_CONFIG`` naming any endless or huge file) was read
whole: memory grew by half a gigabyte a second until a MemoryError traceback. A file, a
pipe or a process substitution (``--config <(...)``) is read up to
:data:`MAX_CONFIG_BYTES` and refused past it, without reading the rest. The size is
counted as it is read, not taken from ``stat``: a pipe's and a device's say nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from tunewatch._errors import ConfigError

# A configuration is a few kilobytes (configs/tunewatch.yaml, the commented example, is
# 4 KiB); the YAML reader is pure Python, and 1 MiB of dense YAML already takes it 17 s
# and 500 MB, so the bound is a search space's.
MAX_CONFIG_BYTES: Final = 1024 * 1024
_CHUNK_BYTES: Final = 64 * 1024


def read_config_text(path: Path) -> str:
    """The UTF-8 text of the configuration file at ``path``; a :class:`ConfigError` of one
    line when it cannot be read, is larger than :data:`MAX_CONFIG_BYTES` or is not UTF-8."""
    chunks: list[bytes] = []
    size = 0
    try:
        with open(path, "rb") as f:
            while size <= MAX_CONFIG_BYTES and (chunk := f.read(_CHUNK_BYTES)):
                chunks.append(chunk)
                size += len(chunk)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from exc
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"configuration file {path} is larger than 1 MiB (more than {MAX_CONFIG_BYTES} "
            "bytes); a configuration is a few kilobytes of YAML"
        )
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from exc
