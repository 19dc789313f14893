"""The ``tapo`` command line."""
