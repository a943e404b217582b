"""What an Alertmanager delivery did not act on, made visible: Alertmanager does not log a
2xx answer's body, so the alerts a delivery ignores (:mod:`tunewatch.api._alerts`) are
listed in its answer, named in one warning per delivery (the first ``_NAMED``: name,
fingerprint, reason and the offending value, each shown bounded) and counted by reason in
``tunewatch_alerts_ignored_total``; the alerts Alertmanager left out of a truncated group
(``truncatedAlerts``) are logged and counted as ``truncated``. The counter's labels are
the reasons alone, never a value the alert carried."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal, get_args

from monitor import ServingMetrics

logger = logging.getLogger(__name__)


def shown(value: Any) -> str:
    """A JSON value for a message: a string's first 64 characters, a number or ``null``,
    or what kind of container it is (a nested one may be too deep to print)."""
    if isinstance(value, str):
        return repr(value[:64]) + ("..." if len(value) > 64 else "")
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else repr(value)[:64]


#: Why a delivery's alert was not acted on: the ``reason`` of
#: ``tunewatch_alerts_ignored_total`` (with ``truncated``, for the alerts Alertmanager left
#: out of the delivery).
IgnoreReason = Literal[
    "not_an_object",
    "unstorable",
    "nul",
    "starts_at",
    "status",
    "model_label_missing",
    "model_unknown",
    "resolved_unseen",
]
#: The ignored alerts a delivery's warning names; the rest are counted in it.
_NAMED = 10


@dataclass(frozen=True, slots=True)
class IgnoredAlert:
    """An alert a delivery ignored, as its warning shows it (every value bounded)."""

    reason: IgnoreReason
    alertname: str
    fingerprint: str | None
    detail: str

    def describe(self) -> str:
        fingerprint = "" if self.fingerprint is None else f" fingerprint {self.fingerprint}"
        return f"{self.alertname}{fingerprint}: {self.reason} ({self.detail})"


class Ignores:
    """The alerts a delivery ignored: their messages go in the answer (``messages``), and
    once the delivery is decided one warning names them and the counter counts them."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.alerts: list[IgnoredAlert] = []

    def add(
        self,
        reason: IgnoreReason,
        message: str,
        *,
        alertname: str,
        fingerprint: str | None,
        detail: str,
    ) -> None:
        self.messages.append(message)
        shown_fingerprint = None if fingerprint is None else shown(fingerprint)
        self.alerts.append(IgnoredAlert(reason, shown(alertname), shown_fingerprint, detail))

    def report(self, metrics: ServingMetrics, *, received: int, actor: str) -> None:
        """One warning for the delivery, naming the first ``_NAMED`` alerts it ignored,
        and the count of each reason; nothing when it ignored none."""
        if not self.alerts:
            return
        reasons = Counter(alert.reason for alert in self.alerts)
        for reason, count in reasons.items():
            metrics.alerts_ignored.labels(reason).inc(count)
        named = "; ".join(alert.describe() for alert in self.alerts[:_NAMED])
        more = len(self.alerts) - _NAMED
        logger.warning(
            "alertmanager delivery by %r: ignored %d of %d alert(s) (%s); answered 2xx, so "
            "Alertmanager does not retry them: %s%s",
            actor,
            len(self.alerts),
            received,
            ", ".join(f"{reason} {count}" for reason, count in reasons.items()),
            named,
            f"; and {more} more" if more > 0 else "",
        )


def report_truncated(metrics: ServingMetrics, value: Any, *, actor: str) -> None:
    """Log ``truncatedAlerts`` when Alertmanager left alerts out of the delivery (more
    than the receiver's ``max_alerts``), and count them; one that is not a count of
    alerts (Alertmanager's is an unsigned integer) is logged, not counted."""
    if type(value) is int and value == 0:
        return
    if type(value) is not int or value < 0:
        logger.warning(
            "alertmanager delivery by %r: `truncatedAlerts` must be a non-negative integer "
            "(the alerts Alertmanager left out), got %s; ignored",
            actor,
            shown(value),
        )
        return
    metrics.alerts_ignored.labels("truncated").inc(value)
    logger.warning(
        "alertmanager delivery by %r: truncatedAlerts=%d: Alertmanager left %d alert(s) of "
        "the group out of this notification (more than the receiver's max_alerts), and "
        "they are not acted on until a notification carries them",
        actor,
        value,
        value,
    )


def alert_names(alert: dict[str, Any]) -> tuple[str, str | None]:
    """An alert's name and fingerprint as sent, for a message, read without logging."""
    labels = alert.get("labels")
    name = labels.get("alertname") if isinstance(labels, dict) else None
    fingerprint = alert.get("fingerprint")
    return (
        name if isinstance(name, str) else "unnamed",
        fingerprint if isinstance(fingerprint, str) else None,
    )


#: The webhook's refusals of a whole delivery: 400, no Alertmanager v4 payload; 401, a
#: token unknown or revoked; 403, one without the alertmanager role; 413, a body past
#: ``server.max_body_bytes`` (refused before the router runs, and counted under the
#: webhook's route all the same).
REFUSALS = ("400", "401", "403", "413")


def count_from_zero(metrics: ServingMetrics, webhook_path: str) -> None:
    """Export the ignore reasons (``truncated`` aside: counted from its first) and the
    webhook's (at ``webhook_path``) refusals at 0, as the app starts: every process serves
    the webhook, and the first count of a series born at 1 is invisible to
    ``increase()``, which ``TunewatchAlertsIgnored`` and ``TunewatchAlertWebhookRefused``
    read."""
    ServingMetrics.start_at_zero(metrics.alerts_ignored, *((r,) for r in get_args(IgnoreReason)))
    ServingMetrics.start_at_zero(
        metrics.http_requests, *((webhook_path, code) for code in REFUSALS)
    )
