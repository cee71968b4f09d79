"""toxbridge: an end-to-end-encrypted peer-to-peer relay over the Tox network."""

__version__ = "0.1.0"
