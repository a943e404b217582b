"""The live split's challenger is no member of the paired family: it never shadows (the
runtime routes its units to it and leaves it out of the shadows of the others), so a
paired test of it never gets a pair. Counted, it halved the alpha of a real shadow
challenger, which was promoted 100 requests later than on the same evidence alone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tunewatch.test_comparison_loop import (
    MODEL,
    copy_daemon,
    oracle,
    runner,
    template,  # noqa: F401  (module fixture)
    traffic,
    write,
)
from tunewatch._daemon import Daemon
from tunewatch._example import ExampleModel
from tunewatch._split import SplitConfig, route

SPLIT = SplitConfig(challenger=2, percent=50.0, salt="exp-family")


@pytest.fixture
def daemon(template: Path, tmp_path: Path) -> Iterator[Daemon]:  # noqa: F811
    d = copy_daemon(template, tmp_path / "data")
    yield d
    d.close()


def test_a_split_challenger_takes_no_share_of_the_paired_family(
    daemon: Daemon, trained: list[ExampleModel]
) -> None:
    """v1 champion, v2 the split's challenger (answering its units alone), v3 a shadow
    challenger scoring every request v1 answers: v3's paired test is a family of one,
    and v2 has no paired test."""
    d = daemon
    v3 = trained[0]
    d.registry.register(MODEL, v3.onnx, v3.metadata, actor="t", stage="shadow")
    t = traffic(trained, 1000, seed=7)
    arm = {u: route((1, 2), SPLIT, f"u{u}") for u in range(1000)}
    ours = [u for u in range(1000) if arm[u] == 1]
    theirs = [u for u in range(1000) if arm[u] == 2]
    write(  # as the runtime records them: v1 answers, v3 shadows, v2 does not
        d.store,
        ids=ours,
        x=t.x[ours],
        y=t.y[ours],
        answers={1: t.logistic[ours], 3: oracle(t.x[ours])},
        roles={1: "champion", 3: "challenger"},
        units=[f"u{u}" for u in ours],
    )
    write(
        d.store,
        ids=theirs,
        x=t.x[theirs],
        y=t.y[theirs],
        answers={2: oracle(t.x[theirs])},
        roles={2: "challenger"},
        units=[f"u{u}" for u in theirs],
    )
    loop = runner(d, split=SPLIT.model_dump(), min_n=100)
    results = [r for r in loop.run(MODEL) if r.kind == "paired"]
    assert [r.challenger_version for r in results] == [3]
    [look] = [r.look for r in results]
    assert look is not None and look.n == len(ours)
    assert look.family_size == 1
    assert look.adjusted_p_value == look.p_value
    tests = loop.comparisons.list_tests(MODEL, kind="paired", champion_version=1)
    assert [test.challenger_version for test in tests] == [3]
    assert tests[0].state["config"]["alpha"] == 0.05  # not alpha / 2
