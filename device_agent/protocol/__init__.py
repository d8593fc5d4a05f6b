"""The contract host and device share: what ``edge_sdk`` writes and ``device_agent`` reads.

- :mod:`~device_agent.protocol.manifest`: the bundle's ``manifest.json`` (tensor specs,
  preprocessing, stages, semantic versions);
- :mod:`~device_agent.protocol.validation`: the validation set a bundle carries;
- :mod:`~device_agent.protocol.topics`: MQTT topic names, built in one place;
- :mod:`~device_agent.protocol.messages`: every MQTT payload, typed and versioned (one
  framework: ``to_payload()`` / ``from_payload()``);
- :mod:`~device_agent.protocol.chunks`: the deployment messages (offer, chunk, status,
  rollback) and the reassembly of a chunked bundle.

Pure: no sockets, files or clocks. Nothing is imported here, so a command pays only for
the modules it uses.
"""
