"""Foundation helpers: atomic writes, run directories, loopback servers, and the run's one event loop."""
