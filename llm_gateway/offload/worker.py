"""The telemetry process: runs the tracing addons on the flows the relay process sends, and exports the spans.

Reads batches of `flow_wire` messages from stdin until it ends, replays each as the addon hooks the relay would
have called, ticks the addons once a second (idle sessions end), and at the end of stdin closes the open
sessions and flushes every span. `process.TelemetryProcess` starts it at the lowest CPU priority, in a process
group of its own. It ignores SIGINT and SIGTERM: the gateway sends its last flows on shutdown and then closes
stdin, the only signal to stop (also when the gateway itself was killed).

On a second pipe it tells the gateway how many flows it has finished: their ends applied and their spans
exported (or spooled). When the process is lost, the flows sent to it and not finished are the ones that went
untraced with it, and the gateway counts them.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time

from llm_gateway.addons import default_addons
from llm_gateway.flow import Addon, call_hook, finish, notify_chunk, notify_message
from llm_gateway.gc_schedule import FullCollections, collect_if_due, take_over_full_collections
from llm_gateway.offload.flow_wire import Ended, Exchanged, FlowReplicas, Report, decode
from llm_gateway.offload.frames import ACK, read_frame
from llm_gateway.offload.memory import QUIET_S, MemoryReleaser
from llm_gateway.telemetry.otlp_export import shared_encoder
from llm_gateway.telemetry.session_spans import session_idle_seconds
from llm_gateway.telemetry.setup import Telemetry, configure
from llm_gateway.telemetry.span_losses import SpanLosses
from llm_gateway.telemetry.spool import SpoolState

TICK_SECONDS = 1.0
#: flows that end within this gather into one flush and one acknowledgement: the time, under traffic, for which a
#: process that is killed may have exported spans it had not acknowledged yet (they are counted as untraced)
ACK_GATHER_S = 0.25
#: with no flow ending, how often the tally (spans lost, the spool) is looked at again
TALLY_EVERY_S = 1.0


class Replayer:
    """Feeds messages to the addons, one at a time (the ticker thread shares the lock)."""

    def __init__(self, addons: list[Addon]) -> None:
        self.addons = addons
        self.lock = threading.Lock()
        self._replicas = FlowReplicas()
        self.ended = 0  # flow ends applied (`Ended`, `Exchanged`)
        self.last_applied = time.monotonic()
        self.flows_ended = threading.Event()

    @property
    def in_flight(self) -> int:
        """Flows opened and not ended yet."""
        return len(self._replicas)

    def apply(self, batch: list[tuple]) -> None:
        with self.lock:
            self.last_applied = time.monotonic()
            for message in decode(batch):
                if isinstance(message, Report):  # an MCP call report, for the addon that has `report`
                    call_hook(self.addons, "report", message.report)
                    continue
                if isinstance(message, Ended | Exchanged):
                    self.ended += 1
                    self.flows_ended.set()
                for hook, flow, args in self._replicas.apply(message):
                    if hook == "chunk":
                        notify_chunk(flow.chunk_observers or (), *args)
                    elif hook == "message":
                        notify_message(flow.message_observers or (), *args)
                    elif hook in ("done", "error"):
                        finish(self.addons, flow)
                    else:
                        call_hook(self.addons, hook, flow)

    def tick(self) -> None:
        with self.lock:
            call_hook(self.addons, "tick", time.time_ns())

    def close(self) -> None:
        with self.lock:
            call_hook(self.addons, "close")


def collect_garbage(releaser: MemoryReleaser, full_collections: FullCollections, last_flow_at: float,
                    in_flight: int) -> None:
    """A tick's full collection: the releaser's once traffic has paused, else one when the schedule says so."""
    if releaser.tick(last_flow_at):
        full_collections.ran(time.monotonic())
    else:
        collect_if_due(full_collections, in_flight)


def tally(telemetry: Telemetry) -> tuple[int, ...]:
    """The counts an acknowledgement carries after the finished flows, in the order of `frames.TALLY`."""
    losses = telemetry.span_losses or SpanLosses()
    spool = telemetry.spool.state() if telemetry.spool is not None else SpoolState()
    return losses.queue_full, losses.export_failed, spool.dropped, spool.spans, spool.bytes, spool.delivered


def acknowledge(replayer: Replayer, telemetry: Telemetry, fd: int, stopped: threading.Event) -> None:
    """Writes the count of finished flows to `fd` each time flows have ended: the spans of the flows applied so
    far are flushed to the exporter first, so a count says that their spans are out. Also at least every
    TALLY_EVERY_S when the tally changed without traffic (a spool sent after an outage)."""
    acked, told = 0, tally(telemetry)
    while True:
        flows_ended = replayer.flows_ended.wait(TALLY_EVERY_S)
        if stopped.is_set() or (flows_ended and stopped.wait(ACK_GATHER_S)):
            return
        replayer.flows_ended.clear()
        ended = replayer.ended
        if ended != acked:
            telemetry.tracer_provider.force_flush()
        counts = tally(telemetry)
        if ended == acked and counts == told:
            continue
        try:
            os.write(fd, ACK.pack(ended, *counts))
        except OSError:  # the gateway is gone
            return
        acked, told = ended, counts


def main() -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):  # already so when started by TelemetryProcess
        signal.signal(sig, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    config = read_frame(stdin)
    if not isinstance(config, dict):
        return 0
    env = config["env"]
    telemetry = configure(env, wait_for_room=True)  # backpressure: never drop a span for a full queue
    if telemetry is None:
        return 0
    replayer = Replayer(default_addons(env, tracing=telemetry, relaying=False))
    # What start-up made (the SDK, the adapters, the price table: most of the heap) lives as long as the process:
    # out of the cyclic collector's passes, which then cost what the open sessions hold, not all of that too.
    gc.freeze()
    # Full collections walk every open session (110 ms at 10,000): run when no flow is open, not every few calls.
    take_over_full_collections()
    full_collections = FullCollections(time.monotonic())
    stopped = threading.Event()

    # Memory back to the system a moment after traffic paused, and again once the sessions it opened ended idle.
    releaser = MemoryReleaser((QUIET_S, session_idle_seconds(env) + 2 * TICK_SECONDS),
                              forget=(shared_encoder().forget,))

    def tick_forever() -> None:
        while not stopped.wait(TICK_SECONDS):
            replayer.tick()  # idle sessions end
            collect_garbage(releaser, full_collections, replayer.last_applied, replayer.in_flight)

    ticker = threading.Thread(target=tick_forever, name="llm-gateway-ticks", daemon=True)
    ticker.start()
    acks = config.get("acks")
    acker = threading.Thread(target=acknowledge, args=(replayer, telemetry, acks, stopped), name="llm-gateway-acks",
                             daemon=True)
    if acks is not None:
        acker.start()
    try:
        while (batch := read_frame(stdin)) is not None:
            replayer.apply(batch)
    finally:
        stopped.set()
        replayer.flows_ended.set()
        ticker.join()
        if acker.is_alive():
            acker.join()
        replayer.close()  # open sessions end at their last activity
        telemetry.shutdown()  # flush every span
        losses = telemetry.span_losses
        if losses is not None and losses.lost:
            print(f"llm-gateway: the telemetry process lost {losses.lost} spans ({losses.queue_full} with its batch "
                  f"queue full, {losses.export_failed} in exports that failed)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
