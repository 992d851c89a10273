"""The harness: starts the fake upstream, the OTLP sink and every path, measures them side by side, writes
`bench/results/<timestamp>.json` and `.md`, and stops everything it started (in `finally`, by process group).

Order of a run: install peers -> start upstream + sink -> launch all paths, wait until each answers, probe each
-> warm latency -> cold latency -> streams -> throughput -> concurrent streams (+ RSS) -> profile (optional).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench import derive, install, machine, peers, profile, report, wire
from bench import wrk as wrk_tool
from bench.loadgen import Target, summarize_samples
from bench.peers import DIRECT, GATEWAY_OFF, GATEWAY_ON, GATEWAY_PROXY, LITELLM, NGINX, TLS_DIRECT, PathRun
from bench.plan import FULL, QUICK, Plan
from bench.proc import (
    LOOPBACK,
    NICE,
    Managed,
    children_cpu_seconds,
    cpu_plan,
    free_port,
    pin,
    port_open,
    raise_own_priority,
    settle,
    tree_cpu_seconds,
    tree_cpu_seconds_of,
    tree_rss_kib,
    wait_until,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: the time-to-first-byte phase's streams: short, so that hundreds fit in seconds
TTFB_CHUNKS = 2
TTFB_INTERVAL_US = 1000


class LoadgenError(RuntimeError):
    """The load generator process failed; the message carries its stderr."""


@dataclasses.dataclass(frozen=True, slots=True)
class Cpus:
    server: set[int] | None
    harness: set[int] | None
    description: str


def loadgen(spec: dict, cpus: set[int] | None, timeout: float) -> dict:
    """Run one measurement in a fresh load-generator process (pinned with the harness) and return its JSON."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.loadgen"], input=orjson.dumps(spec), capture_output=True, timeout=timeout,
        preexec_fn=pin(cpus), start_new_session=True, cwd=str(peers.REPO_ROOT), check=False,
    )
    if done.returncode != 0:
        raise LoadgenError(f"loadgen {spec['op']} exited {done.returncode}: {done.stderr.decode()[-800:]}")
    return orjson.loads(done.stdout)


def _target_spec(target: Target) -> dict:
    return dataclasses.asdict(target)


@dataclasses.dataclass(slots=True)
class Collected:
    """Raw samples of one path gathered over several load-generator runs."""

    values: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    errors: int = 0
    first_error: str | None = None

    def merge(self, raw: dict) -> None:
        for metric, values in raw.get("samples", {}).items():
            self.values.setdefault(metric, []).extend(values)
        self.errors += raw.get("errors", 0)
        self.first_error = self.first_error or raw.get("first_error")

    def summary(self) -> dict:
        return {**summarize_samples(self.values), "errors": self.errors, "first_error": self.first_error}


class Bench:
    """One run. Everything started is registered in `self.processes` and stopped by `stop_all()`."""

    def __init__(self, plan: Plan, workdir: Path, cpus: Cpus, *, install_missing: bool, log: Callable[[str], None]):
        self.plan = plan
        self.workdir = workdir
        self.cpus = cpus
        self.install_missing = install_missing
        self.log = log
        self.processes: list[Managed] = []
        self.paths: dict[str, PathRun] = {}
        self.upstream_url = ""
        self.sink_url = ""
        self.sink_port = 0
        self.wrk_script = workdir / "post.lua"
        self._shuffles = 0

    # --- servers ---------------------------------------------------------------------------------------------

    def _harness_server(self, name: str, module: str, *args: str) -> tuple[Managed, int]:
        port = free_port()
        managed = Managed.start(name, [sys.executable, "-m", module, "--port", str(port), *args], self.workdir,
                                cpus=self.cpus.harness, cwd=str(peers.REPO_ROOT))
        self.processes.append(managed)
        if not wait_until(lambda: port_open(port), 20, managed):
            raise RuntimeError(f"{module} did not start: {managed.log_tail()}")
        return managed, port

    def start_harness(self) -> None:
        _, up_port = self._harness_server("upstream", "bench.upstream")
        self.upstream_url = f"http://{LOOPBACK}:{up_port}"
        _, self.sink_port = self._harness_server("otlp-sink", "bench.sink")
        self.sink_url = f"http://{LOOPBACK}:{self.sink_port}"
        self.wrk_script.write_text(wrk_tool.script(wire.request_body(stream=False)))

    @functools.cached_property
    def ca_dir(self) -> Path:
        """The CA of the HTTPS paths, made before any of them starts (the gateway's own code makes it)."""
        from llm_gateway.proxy.ca import CertificateAuthority

        directory = self.workdir / "ca"
        CertificateAuthority.load_or_create(directory)
        return directory

    def _tls_direct(self) -> PathRun:
        _, port = self._harness_server("upstream-tls", "bench.upstream", "--tls-ca-dir", str(self.ca_dir))
        return peers.tls_direct(port, self.ca_dir)

    def start_paths(self, selected: list[str]) -> None:
        up_port = int(self.upstream_url.rsplit(":", 1)[1])
        cpus = self.cpus.server
        launchers: dict[str, Callable[[], PathRun]] = {
            DIRECT: lambda: PathRun(DIRECT, "ok", version="fake upstream (aiohttp, uvloop)",
                                    target=Target(DIRECT, LOOPBACK, up_port, wire.MESSAGES_PATH)),
            LITELLM: lambda: peers.start_litellm(self.upstream_url, self.workdir, self.workdir, cpus,
                                                 install_missing=self.install_missing),
            GATEWAY_OFF: lambda: peers.start_gateway(GATEWAY_OFF, self.upstream_url, None, self.workdir, cpus),
            GATEWAY_ON: lambda: peers.start_gateway(GATEWAY_ON, self.upstream_url, self.sink_url, self.workdir, cpus),
            NGINX: lambda: peers.start_nginx(up_port, self.workdir, self.workdir, cpus,
                                             install_missing=self.install_missing),
            TLS_DIRECT: self._tls_direct,
            GATEWAY_PROXY: lambda: peers.start_gateway(GATEWAY_PROXY, self.upstream_url, self.sink_url, self.workdir,
                                                       cpus, proxy_ca_dir=self.ca_dir),
        }
        for name, launch in launchers.items():  # LiteLLM first: it takes longest to come up
            if name not in selected:
                self.paths[name] = PathRun(name, "not_selected", "left out by --only")
                continue
            self.log(f"starting {name}")
            try:
                path = launch()
            except Exception as exc:  # a path that breaks is reported, the others still run
                path = PathRun(name, "failed_to_start", f"{type(exc).__name__}: {exc}")
            if path.process is not None:
                self.processes.append(path.process)
            self.paths[name] = path
        for path in self.paths.values():
            path.wait_ready()
            if path.ok and path.process is not None and path.name.startswith("gateway"):
                path.notes.append(" / ".join(line.strip() for line in path.process.log_tail(10).splitlines()))

    def live(self) -> list[PathRun]:
        return [p for p in self.paths.values() if p.ok]

    def probe(self) -> None:
        """One request and one short stream through each path; a path that fails them is reported and dropped."""
        targets = [_target_spec(p.target) for p in self.live() if p.target]
        plain = loadgen({"op": "sequential", "targets": targets, "rounds": 2, "pair": False}, self.cpus.harness, 120)
        streamed = loadgen({"op": "streams", "targets": targets, "rounds": 1, "chunks": 5, "interval_us": 1000},
                           self.cpus.harness, 120)
        for path in self.live():
            for what, result in (("non-streamed", plain), ("streamed", streamed)):
                if result[path.name]["errors"]:
                    path.fail("failed_probe", f"{what} probe request failed: {result[path.name]['first_error']}")
                    break

    def stop_all(self) -> None:
        for managed in reversed(self.processes):
            managed.stop()

    # --- measurements ----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def only(self, running: PathRun | None, settle_s: float = 0.0) -> Iterator[None]:
        """Freeze (SIGSTOP) every server under test but `running`: the background work of an idle server (a span
        export, LiteLLM's logging tasks) then cannot land on another path's measurement. With `settle_s`,
        `running` then gets that long (and until it is idle) to finish what the load left behind, so the work
        does not land on its own next measurement either."""
        frozen = [p.process for p in self.live() if p.process is not None and p is not running]
        for managed in frozen:
            managed.pause()
        try:
            yield
            if settle_s and running is not None and running.pid is not None and running.name != DIRECT:
                settle(running.pid, settle_s)
        finally:
            for managed in frozen:
                managed.resume()

    def _blocks(self, passes: int) -> list[PathRun]:
        """Each proxy twice a pass, in a shuffled order and then the reverse, so slow drift falls on all alike."""
        order: list[PathRun] = []
        for _ in range(passes):
            proxies = [p for p in self.live() if p.name != DIRECT]
            self._shuffles += 1
            random.Random(self._shuffles).shuffle(proxies)
            order += proxies + proxies[::-1]
        return order

    def _interleaved(self, spec: dict, rounds: int, timeout: float, passes: int = 1) -> dict:
        """Run `spec` in blocks of (direct, one proxy), requests alternating in a shuffled order per round, the
        other proxies frozen; `rounds` per proxy, over `passes` (`_blocks`). Each proxy's figures come with the
        direct figures of its own blocks."""
        direct = self.paths[DIRECT]
        assert direct.target is not None
        pooled: dict[str, Collected] = {DIRECT: Collected()}
        same_blocks: dict[str, Collected] = {}
        blocks = self._blocks(passes)
        per_block = max(1, math.ceil(rounds / (2 * passes))) if blocks else rounds
        for index, proxy in enumerate(blocks or [None]):
            targets = [direct] + ([proxy] if proxy is not None else [])
            with self.only(proxy):
                raw = loadgen({**spec, "targets": [_target_spec(t.target) for t in targets if t.target],
                               "rounds": per_block, "seed": index + 1}, self.cpus.harness, timeout)
            pooled[DIRECT].merge(raw[DIRECT])
            if proxy is not None:
                pooled.setdefault(proxy.name, Collected()).merge(raw[proxy.name])
                same_blocks.setdefault(proxy.name, Collected()).merge(raw[DIRECT])
        out = {name: collected.summary() for name, collected in pooled.items()}
        for name, collected in same_blocks.items():
            out[name]["direct_same_blocks"] = collected.summary()
        return out

    def warm(self) -> dict:
        p = self.plan
        self.log(f"warm latency: {p.warm_rounds} rounds per proxy (each after an unmeasured one), concurrency 1")
        return self._interleaved({"op": "sequential", "pair": True}, p.warm_rounds, 900)

    def cold(self) -> dict:
        p = self.plan
        self.log(f"cold latency: {p.cold_rounds} rounds per proxy, {p.cold_idle_ms} ms idle before each request")
        return self._interleaved({"op": "sequential", "idle_ms": p.cold_idle_ms}, p.cold_rounds, 900)

    def streams(self) -> dict:
        p = self.plan
        self.log(f"streams: {p.stream_rounds} per proxy of {p.stream_chunks} SSE chunks, one every "
                 f"{p.stream_interval_us} us, in {p.stream_passes} passes")
        spec = {"op": "streams", "chunks": p.stream_chunks, "interval_us": p.stream_interval_us}
        return self._interleaved(spec, p.stream_rounds, 900, p.stream_passes)

    def ttfb(self) -> dict:
        p = self.plan
        self.log(f"time to first byte: {p.ttfb_rounds} short streams per proxy ({TTFB_CHUNKS} SSE chunks), in "
                 f"{p.stream_passes} passes")
        spec = {"op": "streams", "chunks": TTFB_CHUNKS, "interval_us": TTFB_INTERVAL_US}
        return self._interleaved(spec, p.ttfb_rounds, 900, p.stream_passes)

    def throughput(self, wrk: install.Found | None) -> dict:
        p = self.plan
        out: dict[str, dict] = {}
        order = self.live()
        random.Random(4).shuffle(order)
        for path in order:
            assert path.target is not None
            self.log(f"throughput: {path.name}, {p.rps_concurrency} connections, {p.rps_duration_s} s")
            pid = path.pid if path.name != DIRECT else None
            children_before = children_cpu_seconds(pid) if pid else 0.0
            with self.only(path, settle_s=p.settle_s):
                out[path.name] = result = self._one_throughput(path, wrk, self.wrk_script)
            # The gateway's telemetry process: its CPU over the warm-up, the run and the settling (it drains what
            # the run left queued), per request relayed in that time.
            relayed = result.get("requests", 0) + result.get("warmup_requests", 0)
            if pid and path.name in (GATEWAY_ON, GATEWAY_PROXY) and relayed:
                result["telemetry_cpu_us_per_request"] = round(
                    (children_cpu_seconds(pid) - children_before) * 1e6 / relayed, 1)
        return out

    def _one_throughput(self, path: PathRun, wrk: install.Found | None, script: Path, duration: float | None = None,
                        warmup: float | None = None) -> dict:
        p = self.plan
        target = path.target
        assert target is not None
        pid = path.pid if path.name != DIRECT else None

        def measure(seconds: float) -> dict:
            if wrk is not None and target.tls is None:  # wrk speaks no CONNECT
                return wrk_tool.run(wrk.executable, target, p.rps_concurrency, seconds, script, self.cpus.harness)
            spec = {"op": "throughput", "target": _target_spec(target), "concurrency": p.rps_concurrency,
                    "duration_s": seconds, "warmup_s": 0}
            return loadgen(spec, self.cpus.harness, seconds + 120)

        warmup = p.rps_warmup_s if warmup is None else warmup
        warmup_requests = measure(warmup).get("requests", 0) if warmup else 0
        cpu_before = tree_cpu_seconds(pid) if pid else None
        main_before = tree_cpu_seconds_of([pid]) if pid else 0.0
        result = measure(p.rps_duration_s if duration is None else duration)
        result["warmup_requests"] = warmup_requests
        if pid and cpu_before is not None and result.get("requests"):
            requests = result["requests"]
            result["server_cpu_ms_per_request"] = round((tree_cpu_seconds(pid) - cpu_before) * 1000 / requests, 4)
            # what of it the server's own process used, without its children (the gateway's telemetry process,
            # nginx's worker): which of the two a traced run's CPU went to while the load was on
            result["server_main_process_cpu_ms_per_request"] = round(
                (tree_cpu_seconds_of([pid]) - main_before) * 1000 / requests, 4)
        return result

    def stalls(self) -> dict:
        p = self.plan
        out: dict[str, dict] = {}
        for path in self.live():
            assert path.target is not None
            self.log(f"concurrent streams: {path.name}, levels {list(p.stall_levels)}")
            pid = path.pid if path.name != DIRECT else None
            spec = {"op": "stalls", "target": _target_spec(path.target), "levels": list(p.stall_levels),
                    "interval_ms": p.stall_interval_ms, "ramp_per_s": p.stall_ramp_per_s, "hold_s": p.stall_hold_s,
                    "stall_ms": p.stall_ms, "rss_pid": pid, "budget_s": p.stall_budget_s}
            with self.only(path, settle_s=p.settle_s):
                out[path.name] = loadgen(spec, self.cpus.harness, p.stall_budget_s + 120)
        return out

    def rss(self) -> dict:
        return {p.name: tree_rss_kib(p.pid) for p in self.live() if p.pid and p.name != DIRECT}

    def sink_stats(self) -> dict:
        import urllib.request

        with urllib.request.urlopen(f"{self.sink_url}/stats", timeout=5) as response:
            return orjson.loads(response.read())

    def gateway_telemetry(self) -> dict | None:
        """What the traced gateway says of its telemetry process (`/_gateway/health`): requests it relayed untraced
        because tracing fell behind (a saturated core), and whether the process still runs."""
        import urllib.request

        path = next((p for p in self.live() if p.name == GATEWAY_ON and p.target is not None), None)
        if path is None or path.target is None:
            return None
        url = f"http://{path.target.host}:{path.target.port}/_gateway/health"
        with urllib.request.urlopen(url, timeout=5) as response:
            return orjson.loads(response.read()).get("telemetry")

    # --- profile ---------------------------------------------------------------------------------------------

    def profile(self, py_spy: install.Found, wrk: install.Found | None, out_dir: Path, stamp: str) -> dict:
        """py-spy on the gateway under closed-loop non-streamed load (traced and not), then the traced one under
        many fast streams. Each scenario runs alone, the other servers frozen."""
        p = self.plan
        scenarios = [(GATEWAY_ON, "requests"), (GATEWAY_ON, "streams"), (GATEWAY_OFF, "requests")]
        out: dict[str, dict] = {}
        for name, kind in scenarios:
            gateway = self.paths.get(name)
            key = f"{name} {kind}"
            if gateway is None or not gateway.ok or gateway.pid is None or gateway.target is None:
                out[key] = {"status": "skipped", "reason": f"{name} is not running"}
                continue
            self.log(f"profile: py-spy on {name}, {kind} load, {p.profile_s} s")
            output = out_dir / f"{stamp}-profile-{name}-{kind}.txt"
            cpu_before = tree_cpu_seconds(gateway.pid)
            with self.only(gateway):
                spy = profile.record(py_spy.executable, gateway.pid, p.profile_s, output, self.cpus.harness)
                try:
                    load_result = self._profile_load(gateway, kind, wrk)
                finally:
                    spy_out, _ = spy.communicate(timeout=p.profile_s + 60)
            cpu_s = tree_cpu_seconds(gateway.pid) - cpu_before
            out[key] = self._profile_result(output, spy, spy_out, load_result, cpu_s)
        return out

    def _profile_load(self, gateway: PathRun, kind: str, wrk: install.Found | None) -> dict:
        p = self.plan
        assert gateway.target is not None
        if kind == "requests":
            return self._one_throughput(gateway, wrk, self.wrk_script, p.profile_s + 1, 0)
        # 32 streams, a chunk every 2 ms each: about 16k chunks/s offered, for as long as py-spy records.
        spec = {"op": "stalls", "target": _target_spec(gateway.target), "levels": [32], "interval_ms": 2,
                "ramp_per_s": 1000, "hold_s": p.profile_s, "stall_ms": 1000, "budget_s": p.profile_s + 30}
        return loadgen(spec, self.cpus.harness, p.profile_s + 90)

    @staticmethod
    def _profile_result(output: Path, spy: subprocess.Popen, spy_out: bytes, load: dict, cpu_s: float) -> dict:
        if spy.returncode != 0 or not output.exists():
            return {"status": "failed", "reason": f"py-spy exited {spy.returncode}: {spy_out.decode()[-500:]}"}
        stacks = output.read_text().splitlines()
        summary = profile.summarize_stacks(stacks)
        output.write_text("\n".join(profile.compact(stacks)) + "\n")
        units = load.get("requests")
        unit = "request"
        if units is None:  # the streams scenario: count relayed chunks
            levels = load.get("levels") or [{}]
            units = (levels[0].get("streams_ok") or 0) * (levels[0].get("chunks_per_stream") or 0)
            unit = "chunk"
        return {
            "status": "ok",
            "stacks_file": output.name,
            "gateway_cpu_s": round(cpu_s, 3),
            "units": units,
            "unit": unit,
            "cpu_us_per_unit": round(cpu_s * 1e6 / units, 2) if units else None,
            "load": load,
            **summary,
        }


# --- the run -----------------------------------------------------------------------------------------------------


def _parse_only(value: str | None) -> list[str]:
    if not value:
        return list(peers.ALL_PATHS)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = sorted(set(names) - set(peers.ALL_PATHS))
    if unknown:
        raise SystemExit(f"--only: unknown path(s) {unknown}; choose from {', '.join(peers.ALL_PATHS)}")
    return [DIRECT] + [n for n in peers.ALL_PATHS if n in names and n != DIRECT]  # direct is the reference


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure llm-gateway side by side with direct, nginx and LiteLLM on a local fake upstream.",
    )
    parser.add_argument("--quick", action="store_true", help="small samples, under a minute: a smoke run")
    parser.add_argument("--only", metavar="PATHS",
                        help=f"comma-separated subset of {','.join(peers.ALL_PATHS)} (direct is always measured)")
    parser.add_argument("--skip-install", action="store_true",
                        help="do not apt-get / pip install missing peers; report them as not installed")
    parser.add_argument("--profile", action="store_true",
                        help="also record py-spy profiles of the traced gateway under load")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    plan = QUICK if args.quick else FULL
    selected = _parse_only(args.only)
    server_cpus, harness_cpus, pinning = cpu_plan()
    cpus = Cpus(server_cpus, harness_cpus, pinning)
    if harness_cpus:
        os.sched_setaffinity(0, harness_cpus)  # the harness itself stays off the server's CPU
    reniced = raise_own_priority()
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    t0 = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f}s] {message}", file=sys.stderr, flush=True)

    results: dict = {
        "schema": "llm-gateway-bench/1",
        "started_at": started.isoformat(timespec="seconds"),
        "mode": plan.mode,
        "command": ["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])],
        "machine": machine.describe(),
        "pinning": pinning,
        "priority": f"nice {NICE} for the harness and every process it starts" if reniced
        else "default (raising the priority was not permitted)",
        "versions": machine.versions(peers.REPO_ROOT),
        "settings": dataclasses.asdict(plan),
        "measurements": {},
    }
    install_missing = not args.skip_install
    wrk, wrk_reason = install.apt_tool("wrk", "wrk", install=install_missing)
    results["load_generators"] = {
        "latency_streams_stalls": "bench.loadgen (asyncio + uvloop, raw HTTP/1.1 client), own process",
        "throughput": wrk.version if wrk else f"bench.loadgen (wrk unavailable: {wrk_reason})",
    }
    # SIGTERM as an exception, so the `finally` below still stops every server (each runs in its own session).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    with tempfile.TemporaryDirectory(prefix="llm-gateway-bench-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # nginx's worker (user nobody) reads its temp paths under it
        bench = Bench(plan, workdir, cpus, install_missing=install_missing, log=log)
        try:
            _run(bench, selected, results, wrk, args, stamp, log)
        finally:
            log("stopping every server started")
            bench.stop_all()
            results["paths"] = {n: bench.paths[n].as_dict() for n in peers.ALL_PATHS if n in bench.paths}
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["duration_s"] = round(time.monotonic() - t0, 1)
    results["derived"] = derive.derive(results)
    return _write(results, args.results_dir, stamp)


def _run(bench: Bench, selected: list[str], results: dict, wrk: install.Found | None, args: argparse.Namespace,
         stamp: str, log: Callable[[str], None]) -> None:
    bench.start_harness()
    bench.start_paths(selected)
    try:
        bench.probe()
    except Exception as exc:  # every path stays in the run; the phases report what fails
        log(f"probe failed: {exc}")
    measurements = results["measurements"]
    measurements["rss_fresh_kib"] = bench.rss()
    phases: list[tuple[str, Callable[[], dict]]] = [
        ("warm", bench.warm),
        ("cold", bench.cold),
        ("streams", bench.streams),
        ("ttfb", bench.ttfb),
        ("throughput", lambda: bench.throughput(wrk)),
        ("stalls", bench.stalls),
    ]
    noise = machine.Noise(bench.processes)
    plan = bench.plan
    quiet_budget = plan.quiet_wait_s
    results["quiet_checks"] = {}
    measurements["noise"] = {}
    for name, phase in phases:
        if quiet_budget > 0:  # the machine may be shared: measure in a quiet moment if one comes soon
            check = noise.wait_for_quiet(min(quiet_budget, plan.quiet_wait_s / 3), plan.quiet_share, log)
            quiet_budget -= check["waited_s"]
            results["quiet_checks"][name] = check
        noise.start()
        try:
            measurements[name] = phase()
        except Exception as exc:  # one broken phase must not lose the others' figures
            log(f"{name} failed: {exc}")
            measurements[name] = {"error": f"{type(exc).__name__}: {exc}"}
        measurements["noise"][name] = noise.stop()
        if name == "throughput":  # idle again after the heaviest load, before streams pile on
            measurements["rss_idle_after_load_kib"] = bench.rss()
    with contextlib.suppress(Exception):
        results["otlp_sink"] = bench.sink_stats()
    with contextlib.suppress(Exception):
        results["gateway_on_telemetry"] = bench.gateway_telemetry()
    if args.profile:
        py_spy, reason = install.py_spy(install=not args.skip_install)
        if py_spy is None:
            results["profile"] = {"status": "skipped", "reason": reason}
        else:
            args.results_dir.mkdir(parents=True, exist_ok=True)
            results["profile"] = bench.profile(py_spy, wrk, args.results_dir, stamp)


def _write(results: dict, results_dir: Path, stamp: str) -> int:
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = results_dir / f"{stamp}.json"
    md_path = results_dir / f"{stamp}.md"
    json_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    markdown = report.markdown(results)
    md_path.write_text(markdown)
    print(markdown)
    print(f"\nwritten: {json_path} and {md_path}", file=sys.stderr)
    return 0
