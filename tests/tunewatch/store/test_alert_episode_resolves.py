"""What a resolve did to its episode: resolved now, resolved before (the resolve delivered
again), or never seen firing (stored resolved). A resolve delivered again was taken for
one never seen firing, and the webhook ignored and counted it as such."""

from __future__ import annotations

from tunewatch.store import Store

EPISODE = {"fingerprint": "fp", "starts_at": "t0"}


def test_a_resolve_tells_resolved_now_from_resolved_before_and_never_seen(
    model_store: Store,
) -> None:
    claim = model_store.claim_alert_episode(
        **EPISODE, model="m", alertname="DriftHigh", labels={"model": "m"}
    )
    assert claim is not None
    assert model_store.resolve_alert_episode(**EPISODE) == "resolved"
    assert model_store.resolve_alert_episode(**EPISODE) == "already_resolved"
    assert model_store.resolve_alert_episode(**EPISODE) == "already_resolved"

    unseen = {"fingerprint": "fp-unseen", "starts_at": "t0"}
    assert model_store.resolve_alert_episode(**unseen) == "unseen"
    assert model_store.resolve_alert_episode(**unseen) == "already_resolved"
    # stored resolved: a firing delivery right after it is stale and claims nothing
    assert (
        model_store.claim_alert_episode(**unseen, model="m", alertname="DriftHigh", labels={})
        is None
    )
