"""Sinks: one file per kind, one small interface."""

from device_agent.sinks.base import Result, Sink
from device_agent.sinks.stdout import StdoutSink

__all__ = ["Result", "Sink", "StdoutSink"]
