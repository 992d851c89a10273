"""`llm-gateway ca`: makes the CA once, writes the bundle, prints the path and every way to trust it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from llm_gateway.cli import main


def test_makes_the_ca_once_and_says_how_to_trust_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LLM_GATEWAY_CA_DIR", str(tmp_path / "ca"))
    monkeypatch.setenv("LLM_GATEWAY_PORT", "9911")
    assert main(["ca"]) == 0
    first = capsys.readouterr().out
    cert, bundle = tmp_path / "ca" / "ca.pem", tmp_path / "ca" / "ca-bundle.pem"
    assert first.startswith(f"Made the gateway's CA: {cert}")
    assert stat.S_IMODE((tmp_path / "ca" / "ca-key.pem").stat().st_mode) == 0o600
    assert bundle.read_bytes().endswith(cert.read_bytes())
    for needed in ("HTTPS_PROXY=http://127.0.0.1:9911", f"NODE_EXTRA_CA_CERTS={cert}", f"CODEX_CA_CERTIFICATE={cert}",
                   f"SSL_CERT_FILE={bundle}", f"REQUESTS_CA_BUNDLE={bundle}", "update-ca-certificates",
                   "security add-trusted-cert"):
        assert needed in first
    assert "PRIVATE KEY" not in first

    made = cert.read_bytes()
    assert main(["ca"]) == 0
    assert capsys.readouterr().out.startswith(f"The gateway's CA: {cert}")
    assert cert.read_bytes() == made  # kept, not made again
    assert main(["ca", "--path"]) == 0
    assert capsys.readouterr().out == f"{cert}\n"


def test_unusable_directory_is_one_line_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("LLM_GATEWAY_CA_DIR", str(tmp_path / "file" / "ca"))
    assert main(["ca"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("llm-gateway: cannot use the CA in") and err.count("\n") == 1
