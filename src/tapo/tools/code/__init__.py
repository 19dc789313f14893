"""The Python tool: model-written code runs in an OS-level sandbox, locally or behind an HTTP code server."""
