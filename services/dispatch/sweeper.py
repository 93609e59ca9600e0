"""The time-driven alerts need a clock: run ``sweep`` over every area once a minute.

Not wired into the host yet (services/runtime/host.py runs HTTP, consumers and relays); the
host can start ``run_sweeper(app, stopping)`` as one more task. Until then
``POST /dispatch/areas/{area}/sweep`` does the same for one area.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from eventsourcing.persistence import IntegrityError

from services.dispatch.application import DispatchApplication

log = logging.getLogger(__name__)


def sweep_all(app: DispatchApplication) -> int:
    """Sweep every area dispatch knows; the number of alerts raised."""
    raised = 0
    for area in app.areas():
        try:
            raised += len(app.sweep(area))
        except IntegrityError:
            continue  # another process swept the same area at the same moment
    return raised


async def run_sweeper(app: DispatchApplication, stopping: asyncio.Event,
                      interval_s: float = 60.0) -> None:
    while not stopping.is_set():
        try:
            await asyncio.to_thread(sweep_all, app)
        except Exception:  # noqa: BLE001 - keep sweeping after a transient failure
            log.exception("alert sweep failed; retrying next round")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=interval_s)
