"""Stand-in servers for tests, route tests and the demo (as structlog.testing): the engine never imports them."""
