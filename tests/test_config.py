"""Settings from LLM_GATEWAY_* variables and CLI flags, and the errors that name the bad setting."""

from __future__ import annotations

import pytest

from llm_gateway.config import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_BODY,
    DEFAULT_PORT,
    DEFAULT_READ_TIMEOUT,
    ConfigError,
    Settings,
    load_settings,
)


def test_empty_environment_gives_defaults() -> None:
    assert load_settings(env={}) == Settings(
        host="127.0.0.1", port=DEFAULT_PORT, upstreams={}, catch_all=None, force_all=False,
        connect_timeout=DEFAULT_CONNECT_TIMEOUT, read_timeout=DEFAULT_READ_TIMEOUT, max_body_bytes=DEFAULT_MAX_BODY,
    )


def test_environment_values_are_read() -> None:
    settings = load_settings(env={
        "LLM_GATEWAY_HOST": "0.0.0.0",
        "LLM_GATEWAY_PORT": "9000",
        "LLM_GATEWAY_CONNECT_TIMEOUT": "2.5",
        "LLM_GATEWAY_READ_TIMEOUT": "0.5",
        "LLM_GATEWAY_MAX_BODY_BYTES": "1024",
    })

    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert (settings.connect_timeout, settings.read_timeout, settings.max_body_bytes) == (2.5, 0.5, 1024)


def test_named_upstreams_from_env_are_lowercased_and_lose_trailing_slash() -> None:
    settings = load_settings(env={
        "LLM_GATEWAY_UPSTREAM_ANTHROPIC": "http://127.0.0.1:9001/",
        "LLM_GATEWAY_UPSTREAM_OPENAI": "https://proxy.test/api/openai/",
        "LLM_GATEWAY_UPSTREAM_GEMINI": "",  # empty: not set
    })

    assert settings.upstreams == {"anthropic": "http://127.0.0.1:9001", "openai": "https://proxy.test/api/openai"}
    assert (settings.catch_all, settings.force_all) == (None, False)


def test_default_upstream_is_the_catch_all_not_a_named_upstream() -> None:
    settings = load_settings(env={"LLM_GATEWAY_UPSTREAM_DEFAULT": "http://catch.test"})

    assert settings.upstreams == {}
    assert (settings.catch_all, settings.force_all) == ("http://catch.test", False)


def test_single_upstream_forces_all_traffic_and_wins_over_default() -> None:
    settings = load_settings(env={"LLM_GATEWAY_UPSTREAM": "http://all.test/",
                                  "LLM_GATEWAY_UPSTREAM_DEFAULT": "http://catch.test"})

    assert (settings.catch_all, settings.force_all) == ("http://all.test", True)


def test_flags_win_over_environment() -> None:
    settings = load_settings(
        env={"LLM_GATEWAY_HOST": "0.0.0.0", "LLM_GATEWAY_PORT": "9000",
             "LLM_GATEWAY_UPSTREAM_ANTHROPIC": "http://env.test"},
        host="127.0.0.2", port=0, upstream_flags=[" Anthropic = http://flag.test/ ", "default=http://catch.test"],
    )

    assert (settings.host, settings.port) == ("127.0.0.2", 0)
    assert settings.upstreams == {"anthropic": "http://flag.test"}
    assert settings.catch_all == "http://catch.test"


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("anthropic", "--upstream expects NAME=URL"),
        ("=http://x.test", "--upstream expects NAME=URL"),
        ("anthropic=", "--upstream expects NAME=URL"),
        ("anthropic=api.anthropic.com", "is not an http:// or https:// URL"),
        ("anthropic=ftp://x.test", "is not an http:// or https:// URL"),
        ("anthropic=http://", "is not an http:// or https:// URL"),
        ("anthropic=http://x.test/api?key=1", "query"),
        ("anthropic=http://x.test/#frag", "query"),
    ],
)
def test_bad_upstream_flag_is_config_error_naming_it(flag: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={}, upstream_flags=[flag])

    assert expected in str(caught.value)
    assert "--upstream" in str(caught.value)


@pytest.mark.parametrize(
    "name", ["LLM_GATEWAY_UPSTREAM", "LLM_GATEWAY_UPSTREAM_OPENAI", "LLM_GATEWAY_UPSTREAM_DEFAULT"]
)
def test_bad_upstream_url_in_environment_is_config_error_naming_the_variable(name: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}: 'localhost:8080' is not an http"):
        load_settings(env={name: "localhost:8080"})


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("LLM_GATEWAY_PORT", "http", "is not a number"),
        ("LLM_GATEWAY_PORT", "-1", "must be positive"),
        ("LLM_GATEWAY_READ_TIMEOUT", "soon", "is not a number"),
        ("LLM_GATEWAY_READ_TIMEOUT", "0", "must be positive"),
        ("LLM_GATEWAY_CONNECT_TIMEOUT", "-2", "must be positive"),
        ("LLM_GATEWAY_MAX_BODY_BYTES", "1.5", "is not a number"),
        ("LLM_GATEWAY_MAX_BODY_BYTES", "64MB", "is not a number"),
    ],
)
def test_bad_number_is_config_error_naming_the_variable(name: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env={name: value})

    assert str(caught.value) == f"{name}={value!r} {expected}"
