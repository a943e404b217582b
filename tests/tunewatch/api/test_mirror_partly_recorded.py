"""A mirror call that fails part-way (503 ``store_unavailable``: the store stopped keeping
up, a commit failed, the daemon is shutting down) has its records committed before the
failure stored. It was answered "…; not recorded", without ``Retry-After``, although 10 of
its 64 records were recorded: its answer says how many were, that the rest were not, and
that resending the whole batch is safe (those recorded come back as ``duplicates``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.tunewatch.api.mirror_records import ANSWER, ROW, mirror_record, post_records
from tests.tunewatch.conftest import MODEL, serving
from tunewatch._example import ExampleModel
from tunewatch._record_rows import output_record, request_record
from tunewatch._recorder_queue import record_size


def test_a_batch_failing_part_way_says_how_many_were_recorded_and_asks_for_a_resend(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The records waiting for the store may hold ten records' bytes: of a chunk of 64
    handed over at once, ten are written and the rest refused."""
    one = record_size(
        request_record(MODEL, "size", np.float32([ROW]), source="mirror"),
        [output_record(MODEL, "size", 1, "external", np.float32([ANSWER]), None)],
    )
    extra = {"recording": {"max_batch": 64, "max_pending_bytes": 10 * one}}
    with serving(tmp_path, trained, extra=extra) as running:
        r = post_records(running, *(mirror_record(f"part-{i}") for i in range(64)))
        assert r.status_code == 503 and r.json()["code"] == "store_unavailable", r.text
        store = running.daemon.store
        assert [i for i in range(64) if store.get_request(MODEL, f"part-{i}")] == list(range(10))
        message = r.json()["error"]
        assert "the store is not keeping up" in message  # why, as before
        assert "not recorded" not in message
        assert "of this batch's 64 records, 10 were recorded before the failure" in message
        assert "the other 54 were not" in message
        assert "resend the whole batch" in message and "`duplicates`" in message
        assert int(r.headers["Retry-After"]) > 0


def test_a_batch_refused_by_a_closing_daemon_says_none_was_recorded(
    trained: list[ExampleModel], tmp_path: Path
) -> None:
    """The daemon is shutting down (its recorder closed): every record is refused."""
    with serving(tmp_path, trained) as running:
        running.daemon.runtime.recorder.close()
        r = post_records(running, *(mirror_record(f"none-{i}") for i in range(3)))
        assert r.status_code == 503 and r.json()["code"] == "store_unavailable", r.text
        message = r.json()["error"]
        assert "the daemon is shutting down" in message
        assert "none of this batch's 3 records was recorded" in message, message
        assert "resend the whole batch" in message
        assert int(r.headers["Retry-After"]) > 0
