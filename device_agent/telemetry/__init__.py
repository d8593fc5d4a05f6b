"""Telemetry on the device: window aggregation, the durable outbox, system readings and
the publisher. The messages themselves are the protocol's (:mod:`device_agent.protocol.messages`)."""
