"""Actuators turn the agent's decisions into actions. Only ``dry-run`` (log) is on by default."""

from __future__ import annotations

ACTUATOR_NAMES = ("dry-run", "launcher", "k8s")
