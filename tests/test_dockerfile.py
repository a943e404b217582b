"""The Dockerfile and .dockerignore, checked without a Docker daemon.

The instructions are read the way Docker reads them (comment lines dropped, continued
lines joined), and the HEALTHCHECK's own command runs against a real daemon on a
loopback port, as ``docker`` would run it inside the container (``/bin/sh -c``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath

import pytest

from tunewatch._background import BackgroundServer
from tunewatch._config import build_config, load_config
from tunewatch._daemon import Daemon

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
IMAGE_ADDRESS = "127.0.0.1:8080"  # where the health check finds the daemon in the container
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions in order: comment lines are dropped (also inside a
    continued instruction, as Docker does) and lines ending in a backslash joined."""
    found: list[Instruction] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        found.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    assert not pending, f"the Dockerfile ends inside a continued instruction: {pending!r}"
    return found


def env_of(parsed: list[Instruction]) -> dict[str, str]:
    """What the ENV instructions set, later ones overriding earlier ones."""
    env: dict[str, str] = {}
    for ins in parsed:
        if ins.keyword != "ENV":
            continue
        words = shlex.split(ins.args)
        if "=" not in words[0]:  # the legacy form: ENV KEY value with spaces
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, sep, value = word.partition("=")
            assert sep, f"ENV word {word!r} is not KEY=value in {ins.args!r}"
            env[key] = value
    return env


def volumes_of(ins: Instruction) -> list[str]:
    if ins.args.startswith("["):
        paths = json.loads(ins.args)
        assert isinstance(paths, list)
        return [str(p) for p in paths]
    return shlex.split(ins.args)


def healthcheck_command(parsed: list[Instruction]) -> str:
    """The HEALTHCHECK's shell-form command, its options (``--interval=...``) removed."""
    checks = [ins for ins in parsed if ins.keyword == "HEALTHCHECK"]
    assert len(checks) == 1, f"expected one HEALTHCHECK, got {len(checks)}"
    options = re.match(r"^(?:--[a-z-]+=\S+\s+)*", checks[0].args)
    assert options is not None
    rest = checks[0].args[options.end() :]
    assert rest.startswith("CMD "), f"HEALTHCHECK must be `... CMD <command>`, got {rest!r}"
    command = rest[len("CMD ") :].strip()
    assert not command.startswith("["), "expected the shell form of HEALTHCHECK CMD"
    return command


PARSED = instructions(DOCKERFILE.read_text())


# -- the data directory is a volume -------------------------------------------------------


def test_the_data_dir_named_by_env_is_a_volume_declared_after_its_chown() -> None:
    """The store (requests, labels, tokens, the audit chain) lived in the container's
    writable layer: `docker rm`, or recreating the container to upgrade it, lost it."""
    data_dir = env_of(PARSED).get("TUNEWATCH_DATA_DIR")
    assert data_dir, "the Dockerfile's ENV must set TUNEWATCH_DATA_DIR"
    target = PurePosixPath(data_dir)
    volumes = [
        (i, path)
        for i, ins in enumerate(PARSED)
        if ins.keyword == "VOLUME"
        for path in volumes_of(ins)
    ]
    covering = [i for i, path in volumes if PurePosixPath(path) in (target, *target.parents)]
    assert covering, f"no VOLUME covers TUNEWATCH_DATA_DIR={data_dir}, volumes: {volumes}"
    # a volume is initialised from the image's directory: its owner must be set before,
    # or the non-root daemon cannot write a fresh named volume
    chown = re.compile(rf"\bchown\b[^;&|]*\s{re.escape(data_dir)}/?(?:\s|$)")
    chowned = [i for i, ins in enumerate(PARSED) if ins.keyword == "RUN" and chown.search(ins.args)]
    assert chowned, f"no RUN chowns {data_dir}"
    assert min(covering) > max(chowned), (
        f"VOLUME (instruction {min(covering)}) must come after the chown of {data_dir} "
        f"(instruction {max(chowned)})"
    )


def test_the_image_s_own_config_and_environment_name_one_data_dir(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The image copied `configs/tunewatch.yaml` (`data_dir: .tunewatch`) beside an ENV
    naming /var/lib/tunewatch: every `serve` and `docker exec tunewatch …` warned that the
    environment overrides the file's directory and advised unsetting it, which would have
    put the store outside the volume, where the non-root user cannot write. The config is
    built as in the image: the COPY, then the RUN lines that edit its destination."""
    copied = [
        ins.args.split()
        for ins in PARSED
        if ins.keyword == "COPY" and ins.args.split()[-1].endswith(".yaml")
    ]
    [(source, destination)] = [(args[0], args[-1]) for args in copied]
    local = tmp_path / "etc" / PurePosixPath(destination).name
    local.parent.mkdir()
    local.write_bytes((ROOT / source).read_bytes())
    after = [i for i, ins in enumerate(PARSED) if ins.keyword == "COPY" and destination in ins.args]
    for ins in PARSED[after[0] + 1 :]:
        if ins.keyword == "RUN" and destination in ins.args:
            subprocess.run(["sh", "-c", ins.args.replace(destination, str(local))], check=True)
    env = env_of(PARSED)
    env["TUNEWATCH_CONFIG"] = str(local)
    with caplog.at_level(logging.WARNING, logger="tunewatch"):
        config = load_config(local, env=env)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert Path(config.data_dir) == Path(env["TUNEWATCH_DATA_DIR"])


def test_env_turns_onnxruntime_telemetry_off() -> None:
    assert env_of(PARSED).get("ORT_DISABLE_TELEMETRY") == "1"


# -- the health check ---------------------------------------------------------------------


def test_the_health_check_probes_the_exposed_port() -> None:
    exposed = [ins.args.split("/")[0] for ins in PARSED if ins.keyword == "EXPOSE"]
    assert exposed == [IMAGE_ADDRESS.rsplit(":", 1)[1]]
    assert f"http://{IMAGE_ADDRESS}/healthz" in healthcheck_command(PARSED)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, read and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_health_check(address: str, *, proxy: str | None) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's HEALTHCHECK command against ``address`` (host:port) under
    ``sh -c``, ``python`` being this interpreter; ``proxy`` goes into ``http_proxy`` and
    ``HTTP_PROXY``, as Docker injects them when the client config has proxies."""
    command = healthcheck_command(PARSED)
    assert IMAGE_ADDRESS in command
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES}
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    if proxy is not None:
        env["http_proxy"] = env["HTTP_PROXY"] = proxy
    return subprocess.run(
        ["sh", "-c", command.replace(IMAGE_ADDRESS, address)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon with an empty SQLite store (the app's lifespan starts and stops it)."""
    d = Daemon(build_config({"data_dir": str(tmp_path / "data")}, env={}), env={})
    try:
        yield d
    finally:
        d.close()


@pytest.mark.parametrize("proxied", [False, True], ids=["no-proxy", "proxy-at-a-closed-port"])
def test_the_health_check_passes_on_a_serving_daemon(daemon: Daemon, proxied: bool) -> None:
    """urlopen honoured $http_proxy: with Docker's injected proxy variables the check
    went to the proxy, and a healthy daemon was reported unhealthy."""
    proxy = f"http://127.0.0.1:{_closed_port()}" if proxied else None
    with BackgroundServer(daemon.app) as server:
        result = _run_health_check(f"127.0.0.1:{server.port}", proxy=proxy)
    assert result.returncode == 0, result.stderr


def test_the_health_check_fails_on_a_stopped_daemon(daemon: Daemon) -> None:
    with BackgroundServer(daemon.app) as server:
        port = server.port
    result = _run_health_check(f"127.0.0.1:{port}", proxy=None)
    assert result.returncode != 0


def _answering(status: int) -> type[BaseHTTPRequestHandler]:
    """A handler answering every GET with ``status`` and no body."""

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test reads the check's exit status, not the server's log."""

    return Answer


@pytest.mark.parametrize("status", [204, 503], ids=["no-content", "service-unavailable"])
def test_the_health_check_fails_on_an_answer_other_than_200(status: int) -> None:
    with ThreadingHTTPServer(("127.0.0.1", 0), _answering(status)) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            result = _run_health_check(f"127.0.0.1:{httpd.server_address[1]}", proxy=None)
        finally:
            httpd.shutdown()
            thread.join()
    assert result.returncode != 0, result.stderr


# -- the build context --------------------------------------------------------------------


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker matches it: ``*`` and ``?`` within one path
    element, ``**`` across any number of them (none included)."""
    out = ""
    i = 0
    pattern = pattern.strip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out: a pattern matching the path or a
    directory above it excludes it, a later ``!pattern`` takes it back."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for raw in patterns:
        negated = raw.startswith("!")
        regex = _ignore_regex(raw[1:] if negated else raw)
        if any(regex.match(p) for p in prefixes):
            ignored = not negated
    return ignored


def _dockerignore_patterns() -> list[str]:
    assert DOCKERIGNORE.is_file(), "without .dockerignore the build context holds .git and .venv"
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        ".tunewatch/tunewatch.db",  # the default data_dir
        ".tunewatch-demo/artefacts/ab/cd",  # `tunewatch demo`'s
        "configs/.tunewatch/tunewatch.db",  # a config's relative data_dir, beside it
        "tunewatch/.tunewatch/tunewatch.db",  # a data dir inside a copied package
    ],
)
def test_dockerignore_leaves_out_the_repository_the_venv_and_data_dirs(path: str) -> None:
    patterns = _dockerignore_patterns()
    assert _ignored(path, patterns), f"{path} is in the build context; patterns: {patterns}"


@pytest.mark.parametrize("path", ["tunewatch/_cli.py", "configs/tunewatch.yaml", "README.md"])
def test_dockerignore_keeps_what_the_copy_lines_need(path: str) -> None:
    patterns = _dockerignore_patterns()
    assert not _ignored(path, patterns), f"{path} is copied by the Dockerfile but ignored"
