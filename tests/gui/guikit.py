"""Helpers of the GUI tests (the fixtures are in conftest.py beside this file)."""

from __future__ import annotations

RUNNERS: list = []  # the job runners of the windows alive in the current test (filled by the fixtures)


def delivered(job) -> bool:
    """The job finished and its outcome reached the views (its runner drops it from the active set then)."""
    return job.status.finished and not any(job.id in runner._active for runner in RUNNERS)
