"""Benchmark requests: the host asks the device to time a model on its own CPU.

- :mod:`~device_agent.bench.listener`: the agent's side of the ``bench`` topic: verify
  the request's signature against the trusted keys, time the model in a child process
  and answer on ``bench/result``;
- :mod:`~device_agent.bench.child`: that child process (``python -m
  device_agent.bench.child``): load the model, time single-sample calls, print JSON.

The messages are :class:`~device_agent.protocol.messages.BenchRequest` and
:class:`~device_agent.protocol.messages.BenchResult`. Nothing is imported here.
"""
