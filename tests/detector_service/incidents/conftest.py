"""A factory of incident trackers on the test's event loop, each closed after the test."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from detector_service.incidents.config import IncidentConfig
from detector_service.incidents.store import IncidentStore
from detector_service.incidents.tracker import IncidentTracker
from detector_service.incidents.webhook import Webhook


class Trackers:
    def __init__(self, tmp_path: pathlib.Path) -> None:
        self.tmp_path = tmp_path
        self.made: list[IncidentTracker] = []

    def make(self, webhook: Webhook | None = None, **overrides: Any) -> IncidentTracker:
        overrides.setdefault("db_path", self.tmp_path / "incidents.sqlite3")
        config = IncidentConfig(**overrides)
        store = IncidentStore(config.db_path)
        tracker = IncidentTracker(config, store, asyncio.get_running_loop(), webhook)
        self.made.append(tracker)
        return tracker


@pytest.fixture
async def trackers(tmp_path: pathlib.Path) -> AsyncIterator[Trackers]:
    made = Trackers(tmp_path)
    yield made
    for tracker in made.made:
        tracker.close()
