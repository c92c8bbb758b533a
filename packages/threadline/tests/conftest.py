"""Shared test setup: threadline's own pytest plugin provides the telemetry fixtures."""

pytest_plugins = ["threadline.testing"]
