"""The paths under comparison, each started as its own server on 127.0.0.1 in front of the same fake upstream:
the gateway with tracing off and on, nginx `proxy_pass`, and LiteLLM's proxy with a pass-through route. Two HTTPS
paths measure the gateway as a forward proxy: `gateway-proxy` (CONNECT, TLS to the gateway's certificate for
api.anthropic.com, traced) and its reference `tls-direct` (the fake upstream itself behind TLS).

`start_*` launch a server and never raise: a path that cannot be had comes back with its status and the
reason. `PathRun.wait_ready()` then waits for it to answer.
"""

from __future__ import annotations

import os
import secrets
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import install, wire
from bench.client import Tls
from bench.loadgen import Target
from bench.proc import LOOPBACK, Managed, free_port, http_ok, port_open, wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent

DIRECT = "direct"
GATEWAY_OFF = "gateway-off"
GATEWAY_ON = "gateway-on"
NGINX = "nginx"
LITELLM = "litellm"
TLS_DIRECT = "tls-direct"
GATEWAY_PROXY = "gateway-proxy"
ALL_PATHS = (DIRECT, GATEWAY_OFF, GATEWAY_ON, NGINX, LITELLM, TLS_DIRECT, GATEWAY_PROXY)
PROXIES = ALL_PATHS[1:]

_LITELLM_ROUTE = "/bench" + wire.MESSAGES_PATH  # its own paths include an Anthropic-style /v1/messages


@dataclass(slots=True)
class PathRun:
    """One path of the comparison and how it went: status "ok", "not_installed", "failed_to_start",
    "failed_probe" or "not_selected"."""

    name: str
    status: str
    reason: str | None = None
    version: str | None = None
    target: Target | None = None
    process: Managed | None = None
    notes: list[str] = field(default_factory=list)
    _ready: Callable[[], bool] | None = None  # how `wait_ready` tells that the server answers
    _ready_timeout: float = 30.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def fail(self, status: str, reason: str) -> PathRun:
        self.status = status
        self.reason = reason
        if self.process is not None:
            self.process.stop()
        return self

    def wait_ready(self) -> PathRun:
        """After every path was launched (so their startups overlap): wait until this one answers."""
        if self.process is None or self._ready is None or not self.ok:
            return self
        if not wait_until(self._ready, self._ready_timeout, self.process):
            tail = self.process.log_tail() or "no output"
            return self.fail("failed_to_start", f"{self.name} did not become ready: {tail}")
        return self

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            "reason": self.reason,
            "version": self.version,
            "url": self.target.url if self.target else None,
            "pid": self.pid,
            "notes": self.notes,
        }


def _target(name: str, port: int, path: str = wire.MESSAGES_PATH, tls: Tls | None = None) -> Target:
    return Target(name, LOOPBACK, port, path, tls)


def tls_direct(port: int, ca_dir: Path) -> PathRun:
    """The fake upstream's HTTPS twin (started by the harness): what TLS alone costs, for `gateway-proxy`."""
    tls = Tls(wire.TLS_SERVER_NAME, str(ca_dir / "ca.pem"))
    return PathRun(TLS_DIRECT, "ok", version="fake upstream behind TLS (aiohttp, uvloop)",
                   target=_target(TLS_DIRECT, port, tls=tls))


def _launched(path: PathRun, managed: Managed, ready: Callable[[], bool], timeout: float) -> PathRun:
    path.process = managed
    path._ready = ready
    path._ready_timeout = timeout
    return path


def _clean_env() -> dict[str, str]:
    """This environment without OTEL_* / LLM_GATEWAY_* variables, which would change what a path does."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_GATEWAY_"))}


def start_gateway(name: str, upstream_url: str, sink_url: str | None, log_dir: Path, cpus: set[int] | None,
                  proxy_ca_dir: Path | None = None) -> PathRun:
    """`llm-gateway serve` from this checkout, as a user runs it; tracing on when `sink_url` is given. With
    `proxy_ca_dir` its clients use it as an HTTPS proxy to api.anthropic.com, which it intercepts with the CA in
    that directory and relays to the named upstream `anthropic` (the fake)."""
    from llm_gateway import __version__

    port = free_port()
    env = _clean_env()
    # its span spool in the run's directory: what it could not deliver at the end is not sent by a later gateway
    env["LLM_GATEWAY_STATE_DIR"] = str(log_dir / f"{name}-state")
    if sink_url is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink_url
        env["OTEL_SERVICE_NAME"] = "llm-gateway-bench"
    tls = None
    if proxy_ca_dir is not None:
        env["LLM_GATEWAY_CA_DIR"] = str(proxy_ca_dir)
        tls = Tls(wire.TLS_SERVER_NAME, str(proxy_ca_dir / "ca.pem"), connect=True)
    argv = [sys.executable, "-m", "llm_gateway", "serve", "--host", LOOPBACK, "--port", str(port),
            "--upstream", f"anthropic={upstream_url}"]
    path = PathRun(name, "ok", version=f"llm-gateway {__version__}", target=_target(name, port, tls=tls))
    managed = Managed.start(name, argv, log_dir, env=env, cpus=cpus, cwd=str(REPO_ROOT))
    return _launched(path, managed, lambda: http_ok(f"http://{LOOPBACK}:{port}/_gateway/health"), 30)


def nginx_config(port: int, upstream_port: int, workdir: Path) -> str:
    """One worker (the gateway is one process too), a keepalive pool to the upstream, no buffering."""
    return textwrap.dedent(f"""\
        daemon off;
        master_process on;
        worker_processes 1;
        worker_rlimit_nofile 20000;
        pid {workdir}/nginx.pid;
        error_log {workdir}/nginx-error.log warn;
        events {{ worker_connections 10000; }}
        http {{
            access_log off;
            client_body_temp_path {workdir}/client_body;
            proxy_temp_path {workdir}/proxy;
            fastcgi_temp_path {workdir}/fastcgi;
            uwsgi_temp_path {workdir}/uwsgi;
            scgi_temp_path {workdir}/scgi;
            upstream fake_upstream {{
                server {LOOPBACK}:{upstream_port};
                keepalive 64;
            }}
            server {{
                listen {LOOPBACK}:{port} backlog=4096;
                location / {{
                    proxy_pass http://fake_upstream;
                    proxy_http_version 1.1;
                    proxy_set_header Connection "";
                    proxy_buffering off;
                    proxy_request_buffering off;
                    proxy_read_timeout 900s;
                }}
            }}
        }}
        """)


def start_nginx(upstream_port: int, workdir: Path, log_dir: Path, cpus: set[int] | None, *, install_missing: bool
                ) -> PathRun:
    found, why = install.apt_tool("nginx", "nginx", install=install_missing)
    if found is None:
        return PathRun(NGINX, "not_installed", why)
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_config(port, upstream_port, workdir))
    path = PathRun(NGINX, "ok", version=found.version, target=_target(NGINX, port))
    path.notes.append("1 worker, keepalive 64 to the upstream, proxy_buffering off, proxy_request_buffering off")
    argv = [found.executable, "-p", str(workdir), "-c", str(conf)]
    return _launched(path, Managed.start(NGINX, argv, log_dir, cpus=cpus), lambda: port_open(port), 15)


def litellm_config(upstream_url: str) -> str:
    return textwrap.dedent(f"""\
        general_settings:
          pass_through_endpoints:
            - path: "{_LITELLM_ROUTE}"
              target: "{upstream_url}{wire.MESSAGES_PATH}"
              auth: false
              forward_headers: true
        """)


def start_litellm(upstream_url: str, workdir: Path, log_dir: Path, cpus: set[int] | None, *, install_missing: bool
                  ) -> PathRun:
    found, why = install.litellm(install=install_missing)
    if found is None:
        return PathRun(LITELLM, "not_installed", why)
    port = free_port()
    conf = workdir / "litellm.yaml"
    conf.write_text(litellm_config(upstream_url))
    env = _clean_env() | {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no fetch of the model price list at startup
        "LITELLM_LOG": "ERROR",
        # It refuses to start without a master key; the pass-through route itself is configured auth: false.
        "LITELLM_MASTER_KEY": "sk-" + secrets.token_hex(32),
    }
    path = PathRun(LITELLM, "ok", version=found.version, target=_target(LITELLM, port, _LITELLM_ROUTE))
    path.notes.append(f"pass_through_endpoints {_LITELLM_ROUTE} -> upstream /v1/messages, auth false, 1 worker "
                      "(uvicorn), stock settings otherwise")
    argv = [found.executable, "--config", str(conf), "--host", LOOPBACK, "--port", str(port), "--num_workers", "1"]
    managed = Managed.start(LITELLM, argv, log_dir, env=env, cpus=cpus, cwd=str(workdir))
    return _launched(path, managed, lambda: http_ok(f"http://{LOOPBACK}:{port}/health/liveliness"), 180)
