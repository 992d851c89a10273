"""`llm-gateway run [serve options] -- CMD ARGS...`: a gateway for one command, from its start to its exit.

The gateway starts on a free loopback port, then CMD runs with an environment that points every kind of agent at
it (`agent_environment`): the base-URL variables of the SDKs and CLIs, and the forward proxy with its CA trusted
for agents that have no base-URL setting. When CMD exits, the gateway stops: its sessions end at once and their
spans are flushed before `run` exits with CMD's status.

What the user already set is kept (`agent_environment` says how for each kind of variable): a base URL stays
where those calls go, as the gateway's upstream; a proxy of the user's stays the agent's proxy; a CA file of the
user's stays trusted, with the gateway's CA added beside it.

`run` builds the spans in its own process rather than in a telemetry process: it traces one command, and it
must know, when that command exits, which sessions it saw (LLM_GATEWAY_PRINT=tree prints them then, not in the
middle of the command's output) and which traces their spans went to (its last line names them). A trace
backend that is down holds the exit for at most the exporter's own timeout (OTEL_EXPORTER_OTLP_TIMEOUT), after
which the spans are spooled for the next start, as `serve`'s telemetry process does.

The command owns the terminal: its stdin, stdout and stderr are run's own, and the gateway's lines go to stderr
only before it starts and after it exits (held in memory meanwhile), or to `--log FILE`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import logging
import os
import shlex
import signal
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from llm_gateway.config import ConfigError, Settings, parse_upstream_pairs
from llm_gateway.mcp.reporter import ENV_GATEWAY_URL
from llm_gateway.proxy import CAError
from llm_gateway.proxy.trust import ensure_ca
from llm_gateway.server import SHUTDOWN_TELEMETRY_WAIT_S, Gateway
from llm_gateway.sessions.state import SessionState
from llm_gateway.sessions.tree import render
from llm_gateway.telemetry.session_spans import ENV_PRINT
from llm_gateway.telemetry.setup import export_plan


@dataclass(frozen=True, slots=True)
class BaseUrl:
    """An agent's base-URL variable and the gateway upstream its calls belong to."""

    variable: str
    upstream: str
    #: the API version path the client's URL ends with (OpenAI's clients append `/chat/completions` to `.../v1`)
    version: str = ""


BASE_URLS = (
    BaseUrl("ANTHROPIC_BASE_URL", "anthropic"),  # Claude Code, the anthropic SDKs
    BaseUrl("OPENAI_BASE_URL", "openai", "/v1"),  # Codex with an API key, the openai SDKs
    BaseUrl("GOOGLE_GEMINI_BASE_URL", "gemini"),  # Gemini CLI, the google-genai SDK
)
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy")  # clients differ in which spelling they read first
NO_PROXY_VARIABLES = ("NO_PROXY", "no_proxy")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
#: an extra CA added to the client's own roots: the gateway's CA alone
EXTRA_CA_VARIABLES = ("NODE_EXTRA_CA_CERTS", "CODEX_CA_CERTIFICATE")
#: a bundle that replaces the client's roots: the system's roots plus the gateway's CA
BUNDLE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "AWS_CA_BUNDLE")
#: signals sent to `run` that it passes on to the command
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: gateway log lines kept while the command runs (the oldest are dropped past this, and counted)
HELD_LINES = 1000


def upstreams_from(env: Mapping[str, str]) -> dict[str, str]:
    """The user's base-URL variables as gateway upstreams: the calls still go where the user sent them."""
    upstreams: dict[str, str] = {}
    for base in BASE_URLS:
        value = (env.get(base.variable) or "").strip().rstrip("/")
        if not value:
            continue
        if base.version and value.endswith(base.version):
            value = value[: -len(base.version)]
        upstreams.update(parse_upstream_pairs([f"{base.upstream}={value}"], base.variable))
    return upstreams


def gateway_settings(settings: Settings, env: Mapping[str, str]) -> Settings:
    """`settings` with the user's base URLs as upstreams where the gateway's own settings (`--upstream`,
    LLM_GATEWAY_UPSTREAM_<NAME>, LLM_GATEWAY_UPSTREAM) name none: those are about this gateway, so they win."""
    if settings.force_all:
        return settings
    theirs = {name: url for name, url in upstreams_from(env).items() if name not in settings.upstreams}
    return dataclasses.replace(settings, upstreams={**theirs, **settings.upstreams}) if theirs else settings


@dataclass(frozen=True, slots=True)
class Trust:
    """The forward proxy's CA as the command is to trust it."""

    ca: Path
    bundle: Path | None  # the system's roots plus the CA (`llm-gateway ca` writes it); None: no system roots found
    workdir: Path  # where a user's own CA file is copied with the CA added

    def added_to(self, user_file: str) -> str:
        """A file with the certificates of the user's `user_file` and then the gateway's CA; the user's path as it
        is when it cannot be read (the client would fail on it anyway, as it does without `run`)."""
        source = Path(user_file).expanduser()
        combined = self.workdir / f"{hashlib.blake2b(bytes(source), digest_size=4).hexdigest()}-{source.name}"
        if not combined.exists():  # several variables often name one file
            try:
                theirs = source.read_bytes()
            except OSError:
                return user_file
            combined.write_bytes(theirs.rstrip(b"\n") + b"\n" + self.ca.read_bytes())
        return str(combined)


def agent_environment(env: Mapping[str, str], gateway_url: str, trust: Trust | None) -> dict[str, str]:
    """The command's environment: `env` with every agent pointed at the gateway at `gateway_url`.

    - Base URLs (ANTHROPIC_BASE_URL, OPENAI_BASE_URL with /v1, GOOGLE_GEMINI_BASE_URL) name the gateway. A user's
      own value is not lost: it is the gateway's upstream for that provider (`gateway_settings`).
    - HTTPS_PROXY names the gateway, unless the user set a proxy: that one is kept (the gateway cannot chain to
      it), and agents without a base URL then reach their providers through it, untraced.
    - NO_PROXY: the user's list, with the loopback names added, so the gateway's own URL never goes to a proxy.
    - When the proxy is the gateway (`trust` given): the CA variables. One the user set keeps its certificates
      and gains the gateway's CA (a copy of the file with the CA added), so their trust holds and the gateway's
      certificates are accepted too.
    - LLM_GATEWAY_URL: this gateway, for `llm-gateway mcp` wrappers the agent starts.
    """
    child = dict(env)
    for base in BASE_URLS:
        child[base.variable] = gateway_url + base.version
    child[ENV_GATEWAY_URL] = gateway_url
    theirs = [name.strip() for variable in NO_PROXY_VARIABLES for name in (env.get(variable) or "").split(",")]
    exceptions = ",".join(dict.fromkeys(name for name in (*theirs, *LOOPBACK_NAMES) if name))
    for variable in NO_PROXY_VARIABLES:
        child[variable] = exceptions
    if trust is None or any(env.get(v) for v in PROXY_VARIABLES):
        return child
    for variable in PROXY_VARIABLES:
        child[variable] = gateway_url
    for variable in EXTRA_CA_VARIABLES:
        child[variable] = trust.added_to(env[variable]) if env.get(variable) else str(trust.ca)
    for variable in BUNDLE_VARIABLES:
        if env.get(variable):
            child[variable] = trust.added_to(env[variable])
        elif trust.bundle is not None:
            child[variable] = str(trust.bundle)
    return child


class TraceIds(SpanProcessor):
    """The trace ids of the spans that ended, in the order they first did: where the command's sessions went
    (TRACEPARENT's trace, or one of their own per session, or per turn)."""

    def __init__(self) -> None:
        self.ids: dict[int, None] = {}

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is not None:
            self.ids.setdefault(span.context.trace_id)

    def hex(self) -> list[str]:
        return [f"{trace_id:032x}" for trace_id in self.ids]


class HeldLines(logging.Handler):
    """Keeps log lines while the command owns the terminal; `write_to` writes them once it has exited."""

    def __init__(self, limit: int = HELD_LINES) -> None:
        super().__init__()
        self.lines: collections.deque[str] = collections.deque(maxlen=limit)
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if len(self.lines) == self.lines.maxlen:
                self.dropped += 1
            self.lines.append(self.format(record))
        except Exception:
            self.handleError(record)

    def write_to(self, out: TextIO) -> None:
        if self.dropped:
            print(f"llm-gateway run: {self.dropped} earlier log lines dropped", file=out)
        for line in self.lines:
            print(line, file=out)
        out.flush()
        self.lines.clear()


@contextlib.contextmanager
def _gateway_lines(log_file: TextIO | None) -> Iterator[None]:
    """While the command runs, the gateway's log lines go to `--log FILE`, or are held and written after."""
    root = logging.getLogger()
    if log_file is not None:
        yield
        return
    held = HeldLines()
    held.setFormatter(root.handlers[0].formatter if root.handlers else logging.Formatter(logging.BASIC_FORMAT))
    saved, root.handlers = root.handlers, [held]
    try:
        yield
    finally:
        root.handlers = saved
        held.write_to(sys.stderr)


def _terminal_sent(sig: int) -> bool:
    """Whether the terminal already delivered `sig` to the command: Ctrl-C sends SIGINT to the whole foreground
    process group, the command included (it shares run's group). Passing it on too would deliver it twice."""
    if sig != signal.SIGINT:
        return False
    try:
        tty = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:  # no controlling terminal: the signal came from a process (kill, a CI runner)
        return False
    try:
        return os.tcgetpgrp(tty) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(tty)


async def _run_command(command: Sequence[str], env: Mapping[str, str]) -> int:
    """Runs the command with the terminal as its own, passing SIGINT/SIGTERM on; its exit status (128+N when it
    died of signal N; 126/127 when it could not be started, as a shell says)."""
    loop = asyncio.get_running_loop()
    child: asyncio.subprocess.Process | None = None
    early: list[int] = []

    def forward(sig: int) -> None:
        if child is None:
            early.append(sig)
        elif child.returncode is None and not _terminal_sent(sig):
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(sig)

    for sig in FORWARDED_SIGNALS:
        loop.add_signal_handler(sig, forward, sig)
    try:
        try:
            child = await asyncio.create_subprocess_exec(*command, env=dict(env))
        except OSError as exc:  # it never started: the terminal is still run's
            print(f"llm-gateway run: {command[0]}: {exc.strerror or exc}", file=sys.stderr, flush=True)
            return 127 if isinstance(exc, FileNotFoundError) else 126
        for sig in early:  # arrived while it was being started
            forward(sig)
        status = await child.wait()
    finally:
        for sig in FORWARDED_SIGNALS:
            loop.remove_signal_handler(sig)
    return 128 - status if status < 0 else status


def _trust(gateway: Gateway, workdir: Path) -> Trust | None:
    """The CA the command is to trust, made if missing, with its bundle written; None when the proxy reads no
    host (LLM_GATEWAY_INTERCEPT=none)."""
    proxy = gateway.relay.proxy
    if proxy is None or not len(proxy.intercept):
        return None
    try:
        ca, _, bundle = ensure_ca(proxy.ca_dir)
    except CAError as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:  # the CA is there, its bundle cannot be written beside it
        raise ConfigError(f"cannot write {exc.filename2 or exc.filename}: {exc.strerror}") from None
    return Trust(ca.files.cert, bundle, workdir)


def _client_url(settings: Settings, port: int) -> str:
    host = settings.host
    if host in ("0.0.0.0", "::", ""):  # listening everywhere: the command reaches it on loopback
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _startup_lines(command: Sequence[str], gateway: Gateway, url: str, env: Mapping[str, str],
                   trust: Trust | None) -> str:
    where = gateway.telemetry.destination if gateway.telemetry is not None else "nowhere"
    shown = " ".join(shlex.join(command).split())  # one line, however long the prompt in it
    shown = shown if len(shown) <= 120 else shown[:117] + "..."
    lines = [f"llm-gateway run: gateway on {url}, traces -> {where}; running {shown}"]
    theirs = next((env[v] for v in PROXY_VARIABLES if env.get(v)), None)
    if trust is not None and theirs:
        lines.append(f"llm-gateway run: the proxy you set ({theirs}) is kept: agents without a base-URL setting "
                     "reach their providers through it, untraced")
    return "\n".join(lines)


def _status_text(status: int) -> str:
    if status > 128 and 0 < status - 128 < signal.NSIG:
        with contextlib.suppress(ValueError):
            return f"status {status} ({signal.Signals(status - 128).name})"
    return f"status {status}"


def _summary(command: Sequence[str], status: int, gateway: Gateway, tracing: bool, sessions: int,
             trace_ids: TraceIds) -> str:
    """The last line: how the command ended and which trace(s) its sessions are in."""
    head = f"llm-gateway run: {Path(command[0]).name} exited with {_status_text(status)}"
    if not tracing or gateway.telemetry is None:
        return f"{head}; not traced (no OTEL_* exporter configured)"
    ids = trace_ids.hex()
    if not ids:
        return f"{head}; no model call, no trace"
    where = gateway.telemetry.destination
    traces = f"trace {ids[0]}" if len(ids) == 1 else f"traces {', '.join(ids)}"
    return f"{head}; {sessions} session(s) in {traces} -> {where}"


async def run_agent(
    command: Sequence[str],
    settings: Settings,
    env: Mapping[str, str] | None = None,
    *,
    log_file: TextIO | None = None,
    verbose: bool = False,
) -> int:
    """Runs `command` through a gateway started for it; returns the command's exit status. `env` is run's own
    environment (TRACEPARENT/TRACESTATE in it parent every session); the gateway's lines go to `log_file`, else to
    stderr before the command starts and after it exits. Startup faults raise ConfigError / TelemetryConfigError."""
    env = dict(os.environ if env is None else env)
    settings = gateway_settings(settings, env)
    out = log_file or sys.stderr
    # Tracing here, in this process (see the module docstring), whenever spans are exported or printed.
    tracing = bool(export_plan(env)) or env.get(ENV_PRINT, "").lower() == "tree"
    finished: list[SessionState] = []
    trace_ids = TraceIds()
    gateway = await Gateway.start(settings, env, on_session_finished=finished.append if tracing else None)
    status = 1
    try:
        if gateway.telemetry is not None:
            gateway.telemetry.add_span_processor(trace_ids)
        with tempfile.TemporaryDirectory(prefix="llm-gateway-run-") as workdir:
            url = _client_url(settings, gateway.port)
            trust = _trust(gateway, Path(workdir))
            child_env = agent_environment(env, url, trust)
            if verbose or log_file is not None:
                print(gateway.describe(), file=out)
            print(_startup_lines(command, gateway, url, env, trust), file=out, flush=True)
            with _gateway_lines(log_file):
                status = await _run_command(command, child_env)
    finally:
        await gateway.stop(telemetry_wait_s=SHUTDOWN_TELEMETRY_WAIT_S)  # sessions end now; spans flushed
    if env.get(ENV_PRINT, "").lower() == "tree":
        for session in finished:
            print(render(session), file=out)
    summary = _summary(command, status, gateway, tracing, len(finished), trace_ids)
    if log_file is not None:
        print(summary, file=log_file, flush=True)
    print(summary, file=sys.stderr, flush=True)
    return status


def main(command: Sequence[str], settings: Settings, *, log_path: str | None = None, verbose: bool = False) -> int:
    if log_path is None:
        return asyncio.run(run_agent(command, settings, verbose=verbose))
    try:
        log_file = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise ConfigError(f"--log {log_path}: {exc.strerror}") from None
    with log_file:
        root = logging.getLogger()
        handler = logging.StreamHandler(log_file)
        handler.setFormatter(root.handlers[0].formatter if root.handlers else None)
        saved, root.handlers = root.handlers, [handler]
        try:
            return asyncio.run(run_agent(command, settings, log_file=log_file, verbose=verbose))
        finally:
            root.handlers = saved
