"""bridge_local: the app-facing JSON command server on top of the toxbridge channel.

Sans-IO cores, bottom up: ``protocol`` (the JSON commands), ``transfer`` (the file transfer
machine), ``filestore`` (files on disk), ``wire`` and ``store`` (bridge-to-bridge records,
SQLite), ``fileservice``, ``peerout`` and ``core`` (files, what goes to the peer bridge,
users, routing, delivery); the trio shells
``server``, ``client``, ``files`` and ``chat`` on top. From toxbridge it may import only the
channel's pieces (errors, frames, fragments), never the daemon.
"""
