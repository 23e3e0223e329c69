from __future__ import annotations

from typing import Any

import pytest

from tests.deploy import _tools


@pytest.fixture(scope="session")
def rendered() -> dict[str, dict[str, str]]:
    """Values-file name -> the chart rendered with it."""
    return {name: _tools.render(_tools.values(name)) for name in _tools.VALUES_FILES}


@pytest.fixture(scope="session")
def docs(rendered: dict[str, dict[str, str]]) -> dict[str, list[dict[str, Any]]]:
    return {name: _tools.manifests(text) for name, text in rendered.items()}
