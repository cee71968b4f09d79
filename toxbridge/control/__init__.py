"""A running node's control socket (``toxbridge status``, ``toxbridge peers``).

``protocol``: the versioned JSON-lines request/reply codec (pure); ``snapshot``: the status
the tox thread publishes and its round-trip and rate meters (pure); ``server``: the 0600
Unix socket in the data dir and its trio server, and the client's one request. The pure
modules sit with the channel's pieces (the tox thread uses ``snapshot``); ``server`` is
part of the daemon's trio side. This ``__init__`` imports nothing, so the tox thread does
not load the server.
"""
