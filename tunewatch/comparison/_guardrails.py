"""The serving guardrails a winning challenger must pass before it is promoted: latency
ratio and cap (on a replay, else the recorded latencies), memory, ONNX parity and the
share of its shadow runs that failed (see :class:`~tunewatch.comparison.GuardrailSettings`)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from shadow.stats import GuardrailConfig, ServingProfile, check_guardrails
from tunewatch._artefacts import ArtefactStore
from tunewatch._version_metadata import recorded_parity_error
from tunewatch.comparison._config import ComparisonConfig, GuardrailSettings
from tunewatch.comparison._latency_replay import (
    ReplayedLatency,
    ReplayTimedOut,
    ReplayUnavailable,
    replay_latency,
)
from tunewatch.comparison._results import CheckedGuardrails
from tunewatch.store import Store, VersionRow
from tunewatch.store._comparisons import ComparisonStore

if TYPE_CHECKING:  # _config nests ComparisonConfig: import nothing that imports _config
    from tunewatch._config import Config

logger = logging.getLogger(__name__)


class Guardrails:
    """Checks a challenger against the champion as recorded now (:meth:`check`)."""

    def __init__(self, store: Store, config: Config, comparisons: ComparisonStore) -> None:
        self.store = store
        self.config = config
        self.comparisons = comparisons
        self._artefact_store: ArtefactStore | None = None  # opened at the first replay

    def check(
        self,
        model: str,
        champion: VersionRow,
        challenger: int,
        settings: ComparisonConfig,
        *,
        replay: bool = True,
    ) -> CheckedGuardrails:
        """The serving guardrails of ``challenger`` against ``champion`` as recorded now,
        the latency ratio and cap on the p99s a replay measures now (see
        :meth:`_latency_ratio` and :meth:`_latency_cap`). Without ``replay`` (a page's
        preview of an open test: up to ``latency_replay_s`` per challenger and view) the
        ratio is not checked, a note giving the recorded one, and the cap reads the
        recorded p99, its refusal saying so."""
        rules = settings.guardrails
        target = self.store.get_version(model, challenger)
        violations: list[str] = []
        notes: list[str] = []
        # The champion's over the period of the challenger's newest: each version's own
        # newest reach back over different periods when one answers more often (a live-
        # split arm, one latency per shadow drain), and a load that changed meanwhile
        # would read as a difference between the versions. Each in its role: a champion
        # promoted after it shadowed answered as a challenger too, and its read as the
        # champion held its shadow-time latencies.
        latencies = self.store.latencies(
            model,
            since=target.created_at,
            versions=(champion.version, challenger),
            newest=rules.latency_samples,
            aligned_to=challenger,
            roles={champion.version: "champion", challenger: "challenger"},
        )
        p99: dict[int, float] = {}
        for version in (champion.version, challenger):
            values = latencies.get(version, np.empty(0))
            if values.size >= rules.min_latency_samples:
                p99[version] = max(float(np.quantile(values, 0.99)), 1e-9)
        counts = {
            v: int(latencies.get(v, np.empty(0)).size) for v in (champion.version, challenger)
        }
        latency_rules = (rules.max_latency_p99_ratio, rules.max_latency_p99_s)
        replayed = (
            self._replay(model, champion, target, rules)
            if replay and any(r is not None for r in latency_rules)
            else None
        )
        if isinstance(replayed, ReplayTimedOut):  # measured, not unmeasured: no fallback
            violations.append(
                f"latency: {replayed}; its p99 is at least the deadline, where the recorded "
                "latencies hold only the runs that finished"
            )
        elif isinstance(replayed, ReplayedLatency):
            subject = "latency" if rules.max_latency_p99_ratio is None else "latency ratio"
            notes.append(replayed.note(champion.version, challenger, subject=subject))
        why = (
            f"the replay could not run: {replayed}"
            if isinstance(replayed, ReplayUnavailable)
            else "not replayed: a preview, or a decision that does not promote"
        )
        ratio = None
        if replay and not isinstance(replayed, ReplayTimedOut):
            ratio = self._latency_ratio(
                model, champion, target, rules, replayed, why, p99, counts, violations, notes
            )
        elif not replay and rules.max_latency_p99_ratio is not None:
            recorded = (
                f"{p99[challenger] / p99[champion.version]:.3g}x"
                if champion.version in p99 and challenger in p99
                else f"too few recorded latencies, {counts}"
            )
            notes.append(
                "latency ratio not checked in this preview: it is decided on a replay when "
                f"the test decides (recorded, a shadow timed in a worker thread: {recorded})"
            )
        if rules.max_latency_p99_s is not None and not isinstance(replayed, ReplayTimedOut):
            self._latency_cap(challenger, rules, replayed, why, p99, counts[challenger], violations)
        memory = {v.version: v.load_memory_bytes for v in (champion, target)}
        memory_rules = rules.max_memory_ratio is not None or rules.max_memory_bytes is not None
        if memory_rules and any(not m for m in memory.values()):
            violations.append(f"memory: load memory not measured for every version: {memory}")
        self._error_rate(model, challenger, rules, violations, notes)
        parity = recorded_parity_error(target.details)
        if parity is None:  # registered before the value was checked
            violations.append(
                f"parity: v{challenger} records `parity_error` = "
                f"{target.details.get('parity_error')!r}, not a finite number >= 0"
            )
        if ratio is not None and ratio[1] - ratio[0] <= rules.min_latency_difference_s:
            notes.append(
                f"latency ratio not applied: v{challenger}'s p99 is within "
                f"{rules.min_latency_difference_s:g} s of v{champion.version}'s "
                "(`min_latency_difference_s`)"
            )
        elif ratio is not None:  # the ratio's own check, on what it was decided on
            violations += check_guardrails(
                GuardrailConfig(
                    max_latency_p99_ratio=rules.max_latency_p99_ratio,
                    max_latency_p99_s=None,
                    max_memory_ratio=None,
                    max_memory_bytes=None,
                    max_parity_error=None,
                ),
                champion=ServingProfile(latency_p99_s=ratio[0], memory_bytes=1),
                challenger=ServingProfile(latency_p99_s=ratio[1], memory_bytes=1),
                parity_error=0.0,
            ).violations
        result = check_guardrails(
            replace(
                rules.limits(),
                max_latency_p99_ratio=None,
                max_latency_p99_s=None,  # on the figure it was decided on, above
            ),
            champion=ServingProfile(
                latency_p99_s=p99.get(champion.version, 1.0),
                memory_bytes=memory[champion.version] or 1,
            ),
            challenger=ServingProfile(
                latency_p99_s=p99.get(challenger, 1.0),
                memory_bytes=memory[challenger] or 1,
            ),
            parity_error=parity or 0.0,
        )
        violations += [
            v
            for v in result.violations
            if not (v.startswith("max_memory") and any(not m for m in memory.values()))
        ]
        return CheckedGuardrails(
            passed=not violations, violations=tuple(violations), notes=tuple(notes)
        )

    def _error_rate(
        self,
        model: str,
        challenger: int,
        rules: GuardrailSettings,
        violations: list[str],
        notes: list[str],
    ) -> None:
        """``max_error_rate`` on the challenger's runs counted so far (shadow runs, as a
        live split's arm, for requests naming it)."""
        if rules.max_error_rate is None:
            return
        tally = self.store.run_tally(model, challenger, "challenger")
        if tally is None or tally.runs == 0:
            notes.append(
                f"error rate not checked: no run of v{challenger} as a challenger counted yet "
                "(runs are counted from store revision 0020 on)"
            )
            return
        rate = tally.failures / tally.runs
        if rate > rules.max_error_rate:
            violations.append(
                f"max_error_rate: v{challenger} failed {tally.failures} of its {tally.runs} "
                f"runs as a challenger ({rate:.3g}; limit {rules.max_error_rate:g}), the last with "
                f"`{tally.last_failure}`"
            )

    def _replay(
        self, model: str, champion: VersionRow, target: VersionRow, rules: GuardrailSettings
    ) -> ReplayedLatency | ReplayUnavailable | ReplayTimedOut:
        """Both versions' p99 by a replay of the newest recorded requests
        (:func:`replay_latency`), which the latency ratio and the cap are decided on; what
        stopped it otherwise. A replayed run of the challenger stopped at
        ``scoring.run_timeout_s`` is not a replay that could not run: the recorded
        latencies leave such runs out, and a challenger looping past the deadline on 2.5%
        of rows read p99 0.8 ms from them."""
        try:
            return replay_latency(
                self.store,
                self._artefacts(),
                champion,
                target,
                runs=rules.latency_replay_runs,
                time_limit_s=rules.latency_replay_s,
                min_runs=rules.min_latency_samples,
                run_timeout_s=self.config.scoring.run_timeout_s,
            )
        except ReplayTimedOut as exc:
            return exc
        except ReplayUnavailable as exc:
            logger.warning("model=%s version=%d latency replay: %s", model, target.version, exc)
            return exc

    def _latency_cap(
        self,
        challenger: int,
        rules: GuardrailSettings,
        replayed: ReplayedLatency | ReplayUnavailable | None,
        why: str,
        recorded: dict[int, float],
        count: int,
        violations: list[str],
    ) -> None:
        """``max_latency_p99_s`` on the challenger's replayed p99, timed as the request
        path times the champion's (the run alone) and as the serving-cost screen predicts
        against the cap; on its recorded p99 only without a replay (``why``), the refusal
        naming the figure. A shadow's recorded latencies are timed in a deprioritised
        worker thread: the champion's own artefact as its shadow read p99 2.12 ms against
        the champion's 0.66 ms, and was refused by a cap of twice the champion's."""
        if isinstance(replayed, ReplayedLatency):
            p99, source = replayed.challenger_p99_s, f"v{challenger}'s p99 by replay"
        elif challenger in recorded:
            p99, source = recorded[challenger], f"v{challenger}'s recorded p99; {why}"
        else:
            violations.append(
                f"latency: need {rules.min_latency_samples} recorded latencies of "
                f"v{challenger} since it was registered for `max_latency_p99_s`, got "
                f"{count}; {why}"
            )
            return
        violations += [
            f"{v} ({source})"
            for v in check_guardrails(
                GuardrailConfig(
                    max_latency_p99_ratio=None,
                    max_latency_p99_s=rules.max_latency_p99_s,
                    max_memory_ratio=None,
                    max_memory_bytes=None,
                    max_parity_error=None,
                ),
                champion=ServingProfile(latency_p99_s=1.0, memory_bytes=1),
                challenger=ServingProfile(latency_p99_s=p99, memory_bytes=1),
                parity_error=0.0,
            ).violations
        ]

    def _latency_ratio(
        self,
        model: str,
        champion: VersionRow,
        target: VersionRow,
        rules: GuardrailSettings,
        replayed: ReplayedLatency | ReplayUnavailable | None,
        why: str,
        recorded: dict[int, float],
        counts: dict[int, int],
        violations: list[str],
        notes: list[str],
    ) -> tuple[float, float] | None:
        """The champion's and the challenger's p99 the latency ratio is decided on;
        ``None`` when it is switched off or not measured.

        A replay (:meth:`_replay`) measures them like for like: the recorded ones are not
        (the same artefact as champion and as shadow read 4.26x, refused). A champion
        scored elsewhere (mirror mode) is replayed too when its artefact loads: its ratio
        was not checked at all, and a much slower winner promoted. Only when the replay
        cannot run (``why``) are the ``recorded`` p99s used (each version's in its role),
        noted; then a mirrored champion's ratio is not checked, and too few recorded
        latencies refuse."""
        if rules.max_latency_p99_ratio is None:
            return None
        if isinstance(replayed, ReplayedLatency):
            return replayed.champion_p99_s, replayed.challenger_p99_s
        challenger = target.version
        if champion.version in recorded and challenger in recorded:
            notes.append(f"latency ratio from the recorded latencies ({why})")
            return recorded[champion.version], recorded[challenger]
        if champion.version not in recorded and self.comparisons.scored_elsewhere(
            model, champion.version, since=target.created_at, newest=rules.latency_samples
        ):
            notes.append(
                "champion scored elsewhere: latency ratio not checked "
                f"(v{champion.version}'s answers are recorded without latencies; {why})"
            )
            return None
        violations.append(
            f"latency: need {rules.min_latency_samples} recorded latencies per version "
            f"since v{challenger} was registered (the champion's over the period of "
            f"v{challenger}'s), got {counts}; {why}"
        )
        return None

    def _artefacts(self) -> ArtefactStore:
        if self._artefact_store is None:
            self._artefact_store = ArtefactStore(self.config.artefact_dir, store=self.store)
        return self._artefact_store
