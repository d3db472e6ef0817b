"""Shared fixtures: every test gets its own data directory; nothing touches ./data.

Tests use these fixtures (`resources`, `make_resources`); none imports this module."""

from __future__ import annotations

import pytest

from testkit.resources import make_resources


@pytest.fixture(scope="session", name="make_resources")
def make_resources_fixture():
    """The factory itself, for tests that build resources under their own root or event source
    (module fixtures included): `make_resources(root, event_source=..., **quality)`."""
    return make_resources


@pytest.fixture
def resources(tmp_path):
    return make_resources(tmp_path)
