"""bridge_local: the app-facing JSON command server on top of the toxbridge channel.

Sans-IO cores, bottom up: ``protocol`` (the JSON commands), ``transfer`` (the file transfer
machine), ``filestore`` (files on disk), ``wire`` and ``store`` (bridge-to-bridge records,
SQLite), ``fileservice`` and ``peerout`` (files; what goes to the peer bridge, in order),
``routing`` (who reaches whom), ``peering`` and ``lanes`` (the session protocol with the
peer bridges; the daemon's channel and the streams per peer), ``core`` (users, delivery, and
the two parts above as one machine); the trio shells ``server``, ``client``, ``files`` and
``chat`` on top. From toxbridge it may import only the channel's pieces (errors, frames,
fragments) and ``access``, never the daemon.
"""
