"""The one rule for what is secret (esb.loading.secrets), as every part of esb applies it."""

from __future__ import annotations

import pytest

from esb.adapters.spec import AdapterSpec
from esb.loading.secrets import MASK, credentials, is_secret_name, mask_secrets, redact


@pytest.mark.parametrize("name", ["X-Auth", "Ocp-Apim-Subscription-Key", "X-Custom-Auth-Thing", "Authorization",
                                  "X-Api-Key", "LEDGER_TOKEN", "OA_SOAP_PASSWORD", "private_key", "Cookie"])
def test_names_that_say_secret_are_secret(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["Accept", "Accept-Language", "LEDGER_URL", "base_url", "username", "host"])
def test_ordinary_names_are_not_secret(name):
    assert not is_secret_name(name)


def test_mask_secrets_masks_by_key_at_any_depth():
    shown = mask_secrets({"auth": {"bearer": {"token": "abc"}}, "headers": {"X-Auth": "v", "Accept": "json"}})
    assert shown == {"auth": {"bearer": {"token": MASK}}, "headers": {"X-Auth": MASK, "Accept": "json"}}


def test_redact_replaces_a_secret_inside_text_but_a_short_one_only_as_a_whole_value():
    assert redact({"a": "Bearer s3cr3t-token", "b": ["t", "it"]}, {"s3cr3t-token", "t"}) == \
        {"a": f"Bearer {MASK}", "b": [MASK, "it"]}


def test_an_adapter_spec_shows_its_credentials_masked_wherever_they_appear():
    settings = {"base_url": "https://x", "auth": {"bearer": {"token": "s3cr3t-token"}},
                "description": "uses s3cr3t-token"}
    spec = AdapterSpec("x", "rest", "adapters/x.yaml", settings, {},
                       secrets=frozenset(credentials(settings)))
    assert "s3cr3t-token" not in repr(spec.shown())
