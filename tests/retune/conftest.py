"""Small seeded scikit-learn models for the export tests (session-scoped)."""

from __future__ import annotations

import pytest
from retune_models import Fitted, make_fitted


@pytest.fixture(scope="session")
def fitted() -> Fitted:
    return make_fitted(seed=11)
