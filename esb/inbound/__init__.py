"""Webhooks in: `source: {http: ...}` routes served by `esb run` (spec, auth, rate limit, the WSGI server)."""
