from __future__ import annotations

import threading

import numpy as np
import pytest
from shadow_models import N_FEATURES, Exported

from shadow import Deployment, LoadedVersion, ShadowError, VersionNotLoadedError


def loaded(exported: Exported, version: int) -> LoadedVersion:
    return LoadedVersion(version=version, model=exported.model, hyperparameter_set=f"hp{version}")


@pytest.fixture
def deployment(logistic: Exported) -> Deployment:
    dep = Deployment("churn")
    dep.set_lineup(loaded(logistic, 1), [loaded(logistic, 2), loaded(logistic, 3)])
    return dep


def test_set_lineup_assigns_roles_from_positions(deployment: Deployment) -> None:
    lineup = deployment.lineup
    assert lineup.champion is not None and lineup.champion.role == "champion"
    assert [c.role for c in lineup.challengers] == ["challenger", "challenger"]
    assert lineup.versions == (1, 2, 3)


def test_promote_makes_challenger_champion_and_old_champion_leaves(
    deployment: Deployment,
) -> None:
    lineup = deployment.promote(3)
    assert lineup is deployment.lineup
    assert lineup.champion is not None and lineup.champion.version == 3
    assert lineup.champion.role == "champion"
    assert lineup.versions == (3, 2)
    with pytest.raises(VersionNotLoadedError):
        deployment.get(1)


def test_get_unknown_version_raises_lookup_error(deployment: Deployment) -> None:
    assert deployment.get(2).hyperparameter_set == "hp2"
    with pytest.raises(KeyError) as info:
        deployment.get(9)
    assert isinstance(info.value, LookupError)
    assert isinstance(info.value, ShadowError)
    assert str(info.value) == "model 'churn' has no loaded version 9"


def test_promote_unknown_version_leaves_lineup_unchanged(deployment: Deployment) -> None:
    before = deployment.lineup
    with pytest.raises(VersionNotLoadedError):
        deployment.promote(9)
    assert deployment.lineup is before


def test_promote_current_champion_is_refused(deployment: Deployment) -> None:
    with pytest.raises(ShadowError) as info:
        deployment.promote(1)
    assert info.value.code == "already_champion"


def test_add_challenger_refuses_a_loaded_version(
    deployment: Deployment, logistic: Exported
) -> None:
    deployment.add_challenger(loaded(logistic, 4))
    assert deployment.lineup.versions == (1, 2, 3, 4)
    with pytest.raises(ShadowError) as info:
        deployment.add_challenger(loaded(logistic, 2))
    assert info.value.code == "version_already_loaded"


def test_remove_unloads_challenger_but_refuses_champion(deployment: Deployment) -> None:
    assert deployment.remove(2).versions == (1, 3)
    with pytest.raises(ShadowError) as info:
        deployment.remove(1)
    assert info.value.code == "champion_removal"
    with pytest.raises(VersionNotLoadedError):
        deployment.remove(2)


def test_set_lineup_refuses_duplicate_versions(logistic: Exported) -> None:
    with pytest.raises(ValueError, match="twice"):
        Deployment("m").set_lineup(loaded(logistic, 1), [loaded(logistic, 1)])


def test_promote_under_concurrent_readers_each_read_sees_exactly_one_champion(
    logistic: Exported, boosting: Exported
) -> None:
    n_versions = 200
    models = (logistic, boosting)
    dep = Deployment("m")
    dep.set_lineup(
        loaded(models[1 % 2], 1),
        [loaded(models[v % 2], v) for v in range(2, n_versions + 1)],
    )
    x = np.zeros((1, N_FEATURES), dtype=np.float32)
    stop = threading.Event()
    problems: list[str] = []
    reads = [0] * 4

    def reader(slot: int) -> None:
        last = 0
        while not stop.is_set():
            lineup = dep.lineup  # one read per "request"
            champion = lineup.champion
            if champion is None:
                problems.append("no champion")
                continue
            k = champion.version
            # exactly one champion: it is not also a challenger, the old ones are gone
            if lineup.versions != tuple(range(k, n_versions + 1)) or champion.role != "champion":
                problems.append(f"inconsistent line-up {lineup.versions[:3]}")
            if k < last:
                problems.append(f"champion went back from {last} to {k}")
            last = k
            # the request is scored by that champion's own session
            if champion.model is not models[k % 2].model:
                problems.append(f"version {k} scored by the wrong model")
            champion.model.run(x)
            reads[slot] += 1

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for version in range(2, n_versions + 1):
            dep.promote(version)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5)
    assert problems == []
    assert sum(reads) > 0
    assert dep.lineup.versions == (n_versions,)
