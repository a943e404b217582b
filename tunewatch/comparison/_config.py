"""How shadow challengers are compared with the champion: nested per model as
``comparison:`` in the daemon's configuration."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from shadow.stats import DEFAULT_MIN_N, GuardrailConfig
from tunewatch._config_base import MAX_DURATION_S
from tunewatch._config_base import Frozen as _Frozen
from tunewatch._split import SplitConfig

#: The most replicates a paired test's bootstrap may draw. Each look's update holds a
#: Poisson weight matrix of up to 1,024 requests by this many replicates: at 10,000 an
#: update of 5,000 requests raised the peak RSS by 236 MB and the state stored with each
#: look holds 276 KB of JSON (at 100,000 a `compare` of 600 requests peaked at 1.26 GB);
#: a percentile interval needs far fewer (200 by default).
MAX_BOOTSTRAP_RESAMPLES = 10_000
#: The largest ``seed``: 32 bits, as ``tuning.seed`` takes. numpy's ``default_rng`` refuses
#: a negative seed (every comparison failed with "expected non-negative integer") and takes
#: any larger one, but the seed is stored in each test's state and one of 32 bits is plenty.
MAX_SEED = 2**32 - 1


class GuardrailSettings(_Frozen):
    """Serving limits a winning challenger must also meet (see ``GuardrailConfig``).
    Ratios compare with the champion; ``None`` switches a rule off. Latency is the p99
    of the challenger's newest ``latency_samples`` latencies recorded since it was
    registered (10,000 by default: a p99 then rests on its 100 slowest, and the read
    stays bounded however long the challenger runs, though every A/B page view and every
    tick reads it) against the champion's over the same period, weighted alike in time:
    the period is cut into 50 slices of equally many of the challenger's latencies, and
    in each the champion's newest as many are read (all it has where fewer) — each
    version's own newest would cover different periods when the challenger answers less
    often, and a load that changed meanwhile would read as a difference; with fewer than
    ``min_latency_samples`` per version the latency rules refuse (nothing measured).

    The ratio and the cap are not decided on those: a shadow's latency is timed in a
    deprioritised worker thread, the champion's on the request path (the same artefact
    read 4.26x, and 2.12 against 0.66 ms p99 under a cap of twice the champion's). They
    are decided by replaying the newest recorded requests through fresh sessions of both
    versions, taking turns in one thread (:mod:`._latency_replay`): up to
    ``latency_replay_runs`` runs each, stopping once ``latency_replay_s`` have passed
    with ``min_latency_samples`` done. ``max_latency_p99_s`` caps the challenger's
    replayed p99, timed as the request path times the champion's (the run alone), as
    the serving-cost screen of a re-tuning predicts against the cap. Only when the
    replay cannot run (an artefact missing, no request of the model's features
    recorded), or is not made (a preview, a decision that does not promote), are both
    read from the recorded latencies, each version's in its role, as above; a refusal
    by the cap names the figure it read.

    ``max_error_rate`` caps the share of the challenger's runs that failed (raised,
    stopped at ``scoring.run_timeout_s``, answered non-finite values or the wrong shape),
    its shadow runs, its runs as a live split's arm and for requests naming it alike:
    their requests had no output of its own, so its tests were decided on the rest, and
    once promoted each failure is a client's error. The runs are counted since the
    upgrade that began counting them (store revision 0020); a challenger with none
    counted yet is not checked (noted). The default refuses one failure per thousand
    runs."""

    max_latency_p99_ratio: float | None = Field(default=1.2, gt=0)
    max_latency_p99_s: float | None = Field(default=None, gt=0, le=MAX_DURATION_S)
    max_memory_ratio: float | None = Field(default=1.5, gt=0)
    max_memory_bytes: int | None = Field(default=None, gt=0)
    max_parity_error: float | None = Field(default=1e-4, gt=0)
    max_error_rate: float | None = Field(default=1e-3, ge=0, lt=1)
    min_latency_samples: int = Field(default=20, ge=1)
    latency_samples: int = Field(default=10_000, ge=1)
    # A p99 this close to the champion's never breaks the ratio: the example gradient
    # boosting replayed at 1.02-1.18x the logistic model (true ~1.07x, a microsecond
    # apart) across 100 replays on a loaded host, and a few microseconds are far under
    # what one request's HTTP handling costs.
    min_latency_difference_s: float = Field(default=2e-5, ge=0, le=MAX_DURATION_S)
    latency_replay_runs: int = Field(default=2_000, ge=1)
    latency_replay_s: float = Field(default=2.0, gt=0, le=MAX_DURATION_S)

    @model_validator(mode="after")
    def _samples_hold_the_minimum(self) -> GuardrailSettings:
        if self.min_latency_samples > self.latency_samples:
            raise ValueError(
                f"`min_latency_samples` ({self.min_latency_samples}) must be at most "
                f"`latency_samples` ({self.latency_samples}), the latencies read per "
                "version: the latency rules could never measure"
            )
        return self

    def limits(self) -> GuardrailConfig:
        return GuardrailConfig(
            max_latency_p99_ratio=self.max_latency_p99_ratio,
            max_latency_p99_s=self.max_latency_p99_s,
            max_memory_ratio=self.max_memory_ratio,
            max_memory_bytes=self.max_memory_bytes,
            max_parity_error=self.max_parity_error,
        )


class RollbackWatchConfig(_Frozen):
    """After a promotion, compare the new champion's realised per-request losses with the
    previous champion's; the watch ends (passed) after ``watch_requests`` labelled
    requests or ``watch_s`` seconds.

    ``paired`` (default): the previous champion is kept in shadow during the watch and
    the two are compared on the same requests, with the comparison's paired burn-in
    (``comparison.min_n``). Unpaired: with the previous champion's last
    ``baseline_requests`` labelled requests before the promotion (burn-in ``min_n`` per
    side, 500 as the paired test's: at 30, a quarter of simulated watches of one model
    with skewed log losses on both sides decided, mostly "better", which passes the
    watch), which costs no shadow scoring, but traffic that grew harder since looks like
    a worse model."""

    enabled: bool = True
    paired: bool = True
    baseline_requests: int = Field(default=1000, ge=2)
    watch_requests: int = Field(default=5000, ge=1)
    watch_s: float | None = Field(default=None, gt=0, le=MAX_DURATION_S)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    method: Literal["confidence_sequence", "msprt"] = "confidence_sequence"
    min_n: int = Field(default=DEFAULT_MIN_N, ge=2)

    @model_validator(mode="after")
    def _unpaired_sides_outlast_burn_in(self) -> RollbackWatchConfig:
        if self.enabled and not self.paired:
            for field in ("baseline_requests", "watch_requests"):
                if getattr(self, field) < self.min_n:
                    raise ValueError(
                        f"`rollback.{field}` ({getattr(self, field)}) must be at least "
                        f"`rollback.min_n` ({self.min_n}), the unpaired watch's burn-in: "
                        "no look could decide"
                    )
        return self


class ComparisonConfig(_Frozen):
    """How shadow challengers are compared with the champion (nested per model as
    ``comparison:``)."""

    enabled: bool = True
    interval_s: float = Field(default=300.0, gt=0, le=MAX_DURATION_S)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    method: Literal["confidence_sequence", "msprt"] = "confidence_sequence"
    # Holm on the always-valid p-values (default) or Bonferroni; each test's interval is
    # tuned at alpha / k for the k challengers present when it started. Group-sequential
    # DeLong tests always use Bonferroni (their p-values are not always valid).
    correction: Literal["holm", "bonferroni"] = "holm"
    planned_n: int = Field(default=1000, ge=2)
    # paired requests before a look may decide (shadow.stats.DEFAULT_MIN_N explains 500)
    min_n: int = Field(default=DEFAULT_MIN_N, ge=2)
    mixing_sd: float | None = Field(default=None, gt=0)
    # 0: no bootstrap interval beside the test's own; else at least the 2 replicates a
    # percentile interval needs
    bootstrap_resamples: int = 200
    # each challenger's bootstrap draws from ``default_rng(seed + version)``
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    max_batch: int = Field(default=50_000, ge=1, description="requests fed per test per run")
    delong_looks: int = Field(default=5, ge=1)
    delong_look_every: int = Field(default=500, ge=10, description="requests between looks")
    guardrails: GuardrailSettings = GuardrailSettings()
    rollback: RollbackWatchConfig = RollbackWatchConfig()
    split: SplitConfig | None = None
    srm_alpha: float = Field(default=0.001, gt=0, lt=1)
    srm_min_requests: int = Field(default=100, ge=2)
    # Set it when a label's delay depends on the outcome (a default is known in days, a
    # repayment at maturity): tests then read only requests at least this old, in the
    # order they were received, instead of labels in the order they arrived.
    label_maturity_s: float | None = Field(default=None, gt=0, le=MAX_DURATION_S)

    @field_validator("bootstrap_resamples")
    @classmethod
    def _bootstrap_size(cls, value: int) -> int:
        if value != 0 and not 2 <= value <= MAX_BOOTSTRAP_RESAMPLES:
            raise ValueError(
                "`bootstrap_resamples` must be 0 (no bootstrap interval) or in "
                f"[2, {MAX_BOOTSTRAP_RESAMPLES}]"  # the loader's message adds the value
            )
        return value

    @model_validator(mode="after")
    def _mixing_sd_of_msprt(self) -> ComparisonConfig:
        if self.mixing_sd is not None and self.method != "msprt":
            raise ValueError(
                f"`mixing_sd` applies to `method: msprt` only, got {self.mixing_sd} with "
                f"`method: {self.method}` (a confidence sequence tunes its mixing to "
                "`planned_n`)"
            )
        return self

    @model_validator(mode="after")
    def _watch_outlasts_burn_in(self) -> ComparisonConfig:
        rollback = self.rollback
        if rollback.enabled and rollback.paired and rollback.watch_requests < self.min_n:
            raise ValueError(
                f"`rollback.watch_requests` ({rollback.watch_requests}) must be at least "
                f"`min_n` ({self.min_n}), the paired watch's burn-in: no look could decide "
                "before the watch passed"
            )
        return self

    @model_validator(mode="after")
    def _watch_outlasts_maturity(self) -> ComparisonConfig:
        watch_s, maturity = self.rollback.watch_s, self.label_maturity_s
        if self.rollback.enabled and watch_s is not None and maturity is not None:
            if watch_s <= maturity:
                raise ValueError(
                    f"`rollback.watch_s` ({watch_s:g}) must exceed `label_maturity_s` "
                    f"({maturity:g}): no label of the watched requests would count before "
                    "the watch passed"
                )
        return self

    def matured_before(self, now: datetime) -> datetime | None:
        """Requests received before this have every label they will get (``None``:
        labels are read as they arrive)."""
        if self.label_maturity_s is None:
            return None
        return now - timedelta(seconds=self.label_maturity_s)


def comparison_of(model_config: object | None) -> ComparisonConfig:
    """The comparison settings of a model's configuration (its ``comparison`` section), or
    the defaults for a model the configuration does not list."""
    nested = getattr(model_config, "comparison", None)
    return nested if isinstance(nested, ComparisonConfig) else ComparisonConfig()
