"""`source.http` in a route file: what the loader builds, and what it refuses."""

from __future__ import annotations

import textwrap

import pytest

from esb.errors import ConfigError, ConfigErrors
from esb.inbound.http import Endpoint
from esb.loading.project import load_project

ROUTE = """\
name: hook
source:
  http:
    path: /hooks/oa/expense
    auth: {{hmac: {{secret_env: HOOK_SECRET, window: 2m}}}}
    headers: [{header}]
    rate_limit: {{per_second: 5}}
steps:
  - log: {{message: taken}}
"""


def project(tmp_path, header="X-OA-Event", env=None):
    (tmp_path / "routes").mkdir()
    (tmp_path / "routes/hook.yaml").write_text(textwrap.dedent(ROUTE.format(header=header)))
    return load_project(tmp_path, {"HOOK_SECRET": "from-the-environment"} if env is None else env)


def test_an_http_source_is_built_with_its_secret_from_the_environment_and_never_shown(tmp_path):
    http = project(tmp_path).routes["hook"].source.http
    assert (http.path, http.auth.kind, http.auth.window, http.headers, http.rate) == \
        ("/hooks/oa/expense", "hmac", 120.0, ("X-OA-Event",), 5)
    assert http.auth.secret == "from-the-environment" and "from-the-environment" not in repr(http)


def test_a_route_may_not_copy_an_esb_header_from_a_request(tmp_path):
    with pytest.raises(ConfigErrors, match="x-esb-attempt"):
        project(tmp_path, header="x-esb-attempt")


def test_a_webhook_whose_secret_is_unset_does_not_start(tmp_path):
    route = project(tmp_path, env={}).routes["hook"]
    with pytest.raises(ConfigError, match="HOOK_SECRET is not set"):
        Endpoint.of(route, 1024)
