"""What a model's comparisons stand at: the A/B view of
:meth:`ComparisonRunner.summary <tunewatch.comparison._runner.ComparisonRunner.summary>`
and :meth:`~tunewatch.comparison._runner.ComparisonRunner.split_check`.

Reading only: nothing here looks, decides or acts (the runner's
:meth:`~tunewatch.comparison._runner.ComparisonRunner.run` does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunewatch.comparison._recorded import RecordedGuardrails
from tunewatch.comparison._results import ChallengerSummary
from tunewatch.store import Store
from tunewatch.store._comparisons import ComparisonStore, ComparisonTestRow, SplitCheckRow

if TYPE_CHECKING:
    from tunewatch._split import SplitConfig
    from tunewatch.comparison._config import ComparisonConfig
    from tunewatch.comparison._decisions import Decisions


def summarise(
    store: Store,
    comparisons: ComparisonStore,
    decisions: Decisions,
    model: str,
    settings: ComparisonConfig,
) -> list[ChallengerSummary]:
    """The tests of ``model``'s current champion (and the newest rollback watch) with
    their latest look, the newest split check (:func:`latest_split_check`) and
    guardrails: an open test's checked now with ``decisions`` (no latency replay), a
    decided test's as recorded when it was acted on (:class:`RecordedGuardrails`).
    ``settings`` are the model's comparison settings; an unknown ``model`` raises the
    store's error."""
    store.get_model(model)
    champion = store.champion(model)
    tests: list[ComparisonTestRow] = []
    if champion is not None:
        tests = [
            t
            for t in comparisons.list_tests(model, champion_version=champion.version)
            if t.kind != "rollback_watch"
        ]
    watches = comparisons.list_tests(model, kind="rollback_watch")
    if watches:
        tests.append(watches[-1])
    split = latest_split_check(comparisons, model, settings.split)
    recorded = RecordedGuardrails(store, model)
    out = []
    for test in tests:
        guard = recorded.of(test)
        if champion is not None and test.kind != "rollback_watch" and test.status == "open":
            guard = decisions.guardrails(
                model, champion, test.challenger_version, settings, replay=False
            )
        out.append(ChallengerSummary(test, comparisons.latest_look(test.id), guard, split))
    return out


def latest_split_check(
    comparisons: ComparisonStore, model: str, split: SplitConfig | None
) -> SplitCheckRow | None:
    """The newest sample-ratio check of ``split`` (its salt and challenger), the model's
    configured live split; ``None`` without a split or before its first check."""
    if split is None:
        return None
    return comparisons.latest_split_check(
        model, salt=split.salt, challenger_version=split.challenger
    )
