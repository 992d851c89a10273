"""What `llm-gateway run` gives the command (issue 16): every agent pointed at the gateway, and what the user had
already set kept: a base URL as the gateway's upstream, a proxy of their own as theirs, a CA file of their own
still trusted, with the gateway's CA added."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_gateway.agent_run import Trust, agent_environment, gateway_settings, upstreams_from
from llm_gateway.config import ConfigError, Settings

GATEWAY = "http://127.0.0.1:4100"


@pytest.fixture
def trust(tmp_path: Path) -> Trust:
    ca, bundle, workdir = tmp_path / "ca.pem", tmp_path / "ca-bundle.pem", tmp_path / "work"
    ca.write_text("-----BEGIN CERTIFICATE-----\nGATEWAY\n-----END CERTIFICATE-----\n")
    bundle.write_text("ROOTS\n" + ca.read_text())
    workdir.mkdir()
    return Trust(ca, bundle, workdir)


def test_a_clean_environment_points_every_agent_at_the_gateway(trust: Trust) -> None:
    child = agent_environment({"PATH": "/bin"}, GATEWAY, trust)
    assert child == {
        "PATH": "/bin",
        "ANTHROPIC_BASE_URL": GATEWAY, "OPENAI_BASE_URL": GATEWAY + "/v1", "GOOGLE_GEMINI_BASE_URL": GATEWAY,
        "LLM_GATEWAY_URL": GATEWAY,
        "HTTPS_PROXY": GATEWAY, "https_proxy": GATEWAY,
        "NO_PROXY": "127.0.0.1,localhost,::1", "no_proxy": "127.0.0.1,localhost,::1",
        "NODE_EXTRA_CA_CERTS": str(trust.ca), "CODEX_CA_CERTIFICATE": str(trust.ca),
        "SSL_CERT_FILE": str(trust.bundle), "REQUESTS_CA_BUNDLE": str(trust.bundle),
        "AWS_CA_BUNDLE": str(trust.bundle),
    }


def test_base_urls_the_user_set_become_the_gateways_upstreams_and_the_agent_gets_the_gateway(trust: Trust) -> None:
    env = {"ANTHROPIC_BASE_URL": "https://llm.corp.example/anthropic/", "OPENAI_BASE_URL": "https://openrouter.ai/api/v1",
           "GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:9999"}
    assert upstreams_from(env) == {"anthropic": "https://llm.corp.example/anthropic",
                                   "openai": "https://openrouter.ai/api", "gemini": "http://127.0.0.1:9999"}
    child = agent_environment(env, GATEWAY, trust)
    assert (child["ANTHROPIC_BASE_URL"], child["OPENAI_BASE_URL"], child["GOOGLE_GEMINI_BASE_URL"]) == (
        GATEWAY, GATEWAY + "/v1", GATEWAY)


def test_an_openai_base_url_without_v1_is_the_upstream_as_it_is() -> None:
    assert upstreams_from({"OPENAI_BASE_URL": "https://x.example/openai"}) == {"openai": "https://x.example/openai"}


def test_the_gateways_own_upstream_settings_win_over_the_users_base_urls() -> None:
    env = {"ANTHROPIC_BASE_URL": "https://a.example", "OPENAI_BASE_URL": "https://o.example/v1"}
    settings = gateway_settings(Settings(upstreams={"anthropic": "http://127.0.0.1:1"}), env)
    assert settings.upstreams == {"anthropic": "http://127.0.0.1:1", "openai": "https://o.example"}
    everything = Settings(catch_all="http://127.0.0.1:2", force_all=True)  # LLM_GATEWAY_UPSTREAM
    assert gateway_settings(everything, env) is everything


def test_a_base_url_that_is_not_a_url_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_BASE_URL"):
        upstreams_from({"ANTHROPIC_BASE_URL": "api.anthropic.com"})


def test_a_proxy_the_user_set_is_kept_and_nothing_is_said_about_the_gateways_ca(trust: Trust) -> None:
    env = {"https_proxy": "http://proxy.corp.example:3128", "NO_PROXY": "corp.example"}
    child = agent_environment(env, GATEWAY, trust)
    assert child["https_proxy"] == "http://proxy.corp.example:3128" and "HTTPS_PROXY" not in child
    assert child["NO_PROXY"] == child["no_proxy"] == "corp.example,127.0.0.1,localhost,::1"
    assert not {"NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"} & set(child)
    assert child["ANTHROPIC_BASE_URL"] == GATEWAY  # base-URL agents are still traced


def test_no_proxy_keeps_the_users_entries_once(trust: Trust) -> None:
    child = agent_environment({"no_proxy": "localhost, .internal", "NO_PROXY": ".internal"}, GATEWAY, trust)
    assert child["NO_PROXY"] == ".internal,localhost,127.0.0.1,::1"


def test_ca_files_the_user_set_keep_their_certificates_and_gain_the_gateways(trust: Trust, tmp_path: Path) -> None:
    corp = tmp_path / "corp.pem"
    corp.write_text("CORPORATE ROOTS\n")
    env = {"SSL_CERT_FILE": str(corp), "REQUESTS_CA_BUNDLE": str(corp), "NODE_EXTRA_CA_CERTS": str(corp)}
    child = agent_environment(env, GATEWAY, trust)
    combined = {child[v] for v in env}
    assert len(combined) == 1  # one copy of one file
    assert Path(combined.pop()).read_text() == "CORPORATE ROOTS\n" + trust.ca.read_text()
    assert Path(child["SSL_CERT_FILE"]).parent == trust.workdir
    assert child["AWS_CA_BUNDLE"] == str(trust.bundle) and child["CODEX_CA_CERTIFICATE"] == str(trust.ca)


def test_a_ca_file_that_cannot_be_read_is_left_as_the_user_set_it(trust: Trust) -> None:
    assert agent_environment({"SSL_CERT_FILE": "/nonexistent/ca.pem"}, GATEWAY, trust)["SSL_CERT_FILE"] == (
        "/nonexistent/ca.pem")


def test_without_intercepted_hosts_there_is_no_proxy_to_point_at() -> None:
    child = agent_environment({}, GATEWAY, None)  # LLM_GATEWAY_INTERCEPT=none
    assert "HTTPS_PROXY" not in child and "SSL_CERT_FILE" not in child
    assert child["ANTHROPIC_BASE_URL"] == GATEWAY


def test_trace_context_reaches_the_command_as_the_user_set_it(trust: Trust) -> None:
    env = {"TRACEPARENT": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "TRACESTATE": "a=b"}
    child = agent_environment(env, GATEWAY, trust)
    assert (child["TRACEPARENT"], child["TRACESTATE"]) == (env["TRACEPARENT"], env["TRACESTATE"])
