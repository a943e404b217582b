"""What is alive once the daemon first started is frozen out of the garbage collector's
view (:mod:`tunewatch._heap`): a full collection walked every module, model and route
again, a pause of the event loop every few seconds under load. Run in a fresh process:
the test process has started daemons before."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import gc, sys
    from tunewatch._config import build_config
    from tunewatch._daemon import Daemon

    def tracked(obj):
        return any(o is obj for o in gc.get_objects())

    assert gc.get_freeze_count() == 0
    first = Daemon(build_config({"data_dir": sys.argv[1] + "/a"}, env={}), env={})
    first.start()
    frozen = gc.get_freeze_count()
    assert frozen > 10_000, frozen  # the modules imported, not a handful of objects
    assert not tracked(first) and not tracked(first.app)  # no longer walked
    second = Daemon(build_config({"data_dir": sys.argv[1] + "/b"}, env={}), env={})
    second.start()
    assert gc.get_freeze_count() <= frozen  # once per process (frozen objects may be freed)
    assert tracked(second)  # a later daemon is collected as usual
    second.close()
    first.close()
    print("ok", frozen)
    """
)


def test_the_first_start_freezes_what_is_alive_once_per_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok "), done.stdout
