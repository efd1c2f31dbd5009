"""Webhook parts without the stack: signatures as the Standard Webhooks library and the openai
SDK check them, the destination policy (no SSRF), and the retry schedule."""

import asyncio
import ipaddress
import time

import openai
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from api.webhooks.destinations import DestinationPolicy, DestinationRefused, parse_url, resolve
from api.webhooks.dispatcher import retry_delay
from api.webhooks.signing import new_secret, signed_headers
from vqueue.settings import Settings

BODY = b'{"type":"job.completed","data":{"text":"caf\\u00e9 \\u0000"}}'


def test_a_signature_verifies_with_the_reference_library_and_the_openai_sdk() -> None:
    secret = new_secret()
    headers = signed_headers([secret], "msg_1", int(time.time()), BODY)
    assert Webhook(secret).verify(BODY, headers)["type"] == "job.completed"
    client = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9")
    client.webhooks.verify_signature(BODY, headers, secret=secret)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"job", b"jab"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.verify_signature(BODY, {**headers, "webhook-id": "msg_2"}, secret=secret)


def test_during_a_rotation_both_secrets_sign() -> None:
    old, new = new_secret(), new_secret()
    headers = signed_headers([new, old], "msg_1", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY, headers)
    Webhook(new).verify(BODY, headers)


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.9", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # the cloud metadata service
        ("fe80::1", "link-local"),
        ("fd00::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT
        ("224.0.0.1", "multicast"),
    ],
)
def test_addresses_that_are_not_public_are_refused_by_default(address: str, why: str) -> None:
    refusal = DestinationPolicy().refusal(ipaddress.ip_address(address))
    assert refusal is not None
    assert why in refusal


def test_public_addresses_pass_and_listed_networks_are_let_through() -> None:
    assert DestinationPolicy().refusal(ipaddress.ip_address("93.184.215.14")) is None
    assert DestinationPolicy().refusal(ipaddress.ip_address("2606:4700::1111")) is None
    policy = DestinationPolicy.from_settings(
        Settings(webhook_allowed_networks="10.20.0.0/16, 127.0.0.1/32")
    )
    assert policy.refusal(ipaddress.ip_address("10.20.3.4")) is None
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("10.21.0.1")) is not None


def test_a_host_list_limits_the_names() -> None:
    policy = DestinationPolicy.from_settings(
        Settings(webhook_allowed_hosts="hooks.example.com,.example.org")
    )
    assert policy.allows_host("hooks.example.com")
    assert policy.allows_host("a.b.example.org")
    assert not policy.allows_host("example.org.evil.com")
    assert not policy.allows_host("evil.com")


def test_a_name_that_resolves_to_loopback_is_refused() -> None:
    with pytest.raises(DestinationRefused, match="loopback"):
        asyncio.run(resolve("http://localhost:8080/hook", DestinationPolicy()))
    with pytest.raises(DestinationRefused, match="does not resolve"):
        asyncio.run(resolve("http://no-such-host.invalid/hook", DestinationPolicy()))
    address = asyncio.run(resolve("https://93.184.215.14/hook", DestinationPolicy()))
    assert str(address) == "93.184.215.14"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/x", "http or https"),
        ("example.com/hook", "http or https"),
        ("http:///hook", "host"),
        ("https://user:secret@example.com/", "credentials"),
        ("https://example.com:99999/", "port"),
        ("https://example.com/a b", "whitespace"),
        ("https://example.com/" + "a" * 3000, "at most"),
    ],
)
def test_bad_urls_are_named(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_url(url)


def test_retries_follow_the_schedule_within_jitter_then_stop() -> None:
    delays = Settings(webhook_retry_delays_s="5, 300,1800").webhook_retry_delays
    assert delays == [5.0, 300.0, 1800.0]
    for tries, base in enumerate(delays, start=1):
        delay = retry_delay(delays, tries)
        assert delay is not None
        assert 0.8 * base <= delay <= 1.2 * base
    assert retry_delay(delays, len(delays) + 1) is None
    # The default retries for about a day, as the issue and Standard Webhooks' peers do.
    default = Settings.model_fields["webhook_retry_delays_s"].default
    assert (
        24 * 3600 <= sum(Settings(webhook_retry_delays_s=default).webhook_retry_delays) <= 30 * 3600
    )
