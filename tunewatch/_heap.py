"""What was alive once the daemon first started leaves the garbage collector's view.

CPython's full collection walks every container object alive: in the daemon, the
modules of numpy, scikit-learn, onnxruntime, SQLAlchemy and FastAPI, the models loaded
and the app, hundreds of thousands of objects, most of which live as long as the process.
Under load the records waiting for their commit and the shadow queue's jobs survive
the young collections, so full ones come every few seconds, each a pause of the event
loop: 150 ms with mirror records flowing, and a scoring p99 of 17 ms at saturation with
three challengers in shadow (9 ms with them frozen: an ad-hoc A/B on ``bench/scoring.py``'s
load, see docs/benchmarks.md).
:func:`freeze_startup_heap` collects once and moves everything then alive to the
permanent generation (:func:`gc.freeze`, as Instagram's web servers do), so a full
collection walks only what was made since. Objects frozen are still freed when their
last reference goes; only a cycle among them is never collected: a version loaded at
start and retired later is freed so unless its objects hold one another (none found in
``shadow``'s), and the freeze is done once per process, at the first start (a test
process starts many daemons).
"""

from __future__ import annotations

import gc
import logging
import threading

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_frozen = False


def freeze_startup_heap() -> None:
    """Collect, then freeze every object alive (:func:`gc.freeze`); once per process."""
    global _frozen
    with _lock:
        if _frozen:
            return
        _frozen = True
        gc.collect()
        gc.freeze()
    logger.debug(
        "%d objects alive at start are frozen out of the collector's view", gc.get_freeze_count()
    )
