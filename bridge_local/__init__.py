"""bridge_local: the app-facing JSON command server on top of the toxbridge channel."""
