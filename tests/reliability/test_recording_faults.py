"""Issue 20, item 4: `serve --record` on a disk that fills up or turns read-only keeps relaying and says once that
recording stopped and why; a recording cut by a crash still replays up to its last complete exchange."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

import anthropic
import orjson
import pytest

from llm_gateway.config import Settings
from llm_gateway.recordings import Chunk, Exchange, Fixture, RecordedRequest, RecordedResponse, fixture_files, load
from llm_gateway.recordings.fixtures import from_json, to_json
from tests.reliability.support import (
    AnthropicUpstream,
    ReadOnlyDirectory,
    ask,
    clean_env,
    cli_process,
    file_size_limit,
    tmpfs,
)
from tests.support.servers import running_gateway, running_upstream

# A gateway that, like any program that has not asked otherwise, is killed by the kernel (SIGXFSZ) in the write
# that takes a file past its size limit: a crash in the middle of writing a recording.
DIES_IN_A_WRITE = (sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_DFL); "
                   "from llm_gateway.cli import main; sys.exit(main())")
_TAIL = b"\n  ]\n}\n"  # what follows the last exchange of a fixture file


def _fixture(count: int) -> Fixture:
    exchanges = [
        Exchange(
            RecordedRequest("POST", "/v1/messages", [("content-type", "application/json")],
                            b'{"messages": [{"role": "user", "content": "q%d \\u00e9"}]}' % i),
            RecordedResponse(200, [("content-type", "text/event-stream")],
                             [Chunk(0.0, b"event: a\ndata: {}\n\n"), Chunk(0.25, "é %d\n\n".encode() % i),
                              Chunk(0.5, b"\x00\xff binary")]),
        )
        for i in range(count)
    ]
    return Fixture(exchanges, "three calls", {"origin": "test"}, "cut")


def test_a_fixture_cut_at_any_byte_loads_the_exchanges_complete_before_the_cut(caplog: pytest.LogCaptureFixture):
    fixture = _fixture(3)
    whole = to_json(fixture)
    # where exchange j ends: a file of the first j exchanges is the whole file's prefix up to there, then _TAIL
    ends = []
    for j in range(1, 4):
        part = to_json(Fixture(fixture.exchanges[:j], fixture.description, fixture.source))
        assert part.endswith(_TAIL) and whole.startswith(part[: -len(_TAIL)])
        ends.append(len(part) - len(_TAIL))
    for cut in range(len(whole) + 1):
        complete = sum(end <= cut for end in ends)
        for damaged in (whole[:cut], whole[:cut] + b"\x00" * 64):  # a crash may leave zeros after the cut
            if complete == 0:
                with pytest.raises(ValueError, match="not an llm-gateway/fixture@1 document with a complete"):
                    from_json(damaged, "cut")
            else:
                assert from_json(damaged, "cut").exchanges == fixture.exchanges[:complete], cut
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        from_json(whole[: ends[1] + 10], "cut", "dir/cut.json")
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"llm-gateway: dir/cut.json is cut short ({ends[1] + 10} bytes, ")
    assert warning.endswith("loaded its first 2 complete exchange(s)")


async def _record_through(tmp_path: Path, directory: Path, *, reason: str, preexec_fn=None, fault=None) -> str:
    """30 streamed calls through `serve --record directory`, `fault()` after the first 3 (all in one session; the
    rest in 4 sessions, new and old). Checks that every answer arrived whole and the gateway exited 0; returns
    its stderr."""
    upstream = AnthropicUpstream()
    async with running_upstream(upstream.handle) as upstream_url, cli_process(
        "serve", "--port", "0", "--record", str(directory), "--upstream", f"anthropic={upstream_url}",
        env=clean_env(), log=tmp_path / "gateway.log", preexec_fn=preexec_fn,
    ) as gateway:
        answers = [await ask(gateway.url, f"question {i}", "session-a") for i in range(3)]
        if fault is not None:
            fault()
        answers += [await ask(gateway.url, f"question {i}", f"session-{'abcd'[i % 4]}") for i in range(3, 30)]
        assert await gateway.stop() == 0
    assert answers == upstream.answers  # every call answered, each answer whole
    stderr = gateway.stderr()
    assert "Traceback" not in stderr, stderr
    stopped = [line for line in stderr.splitlines() if "recording to" in line]
    assert len(stopped) == 1, stderr
    assert f"recording to {directory} stopped: {reason}" in stopped[0]
    # what was written before the fault is whole: every file is complete JSON, session-a has its first calls
    files = list(fixture_files(directory))
    assert all(orjson.loads(f.read_bytes())["exchanges"] for f in files)
    (first,) = [load(f) for f in files if "session-a" in f.name]
    assert len(first.exchanges) >= 3
    in_session_a = [upstream.answers[i] for i in (0, 1, 2, *range(4, 30, 4))]
    for exchange, answer in zip(first.exchanges, in_session_a, strict=False):
        assert answer[:100].encode() in exchange.response.body
    return stderr


async def test_record_to_a_full_disk_keeps_relaying_and_says_once_why(tmp_path: Path):
    """The disk is full when a write needs more than is left (a small tmpfs: ENOSPC)."""
    with tmpfs(tmp_path / "small-disk", "64k") as directory:
        await _record_through(tmp_path, directory, reason="No space left on device")


async def test_record_past_the_file_size_limit_keeps_relaying_and_says_once_why(tmp_path: Path):
    """No root needed: RLIMIT_FSIZE makes the write that grows a file past 48 KiB fail (EFBIG)."""
    directory = tmp_path / "recorded"
    await _record_through(tmp_path, directory, reason="File too large", preexec_fn=file_size_limit(48 * 1024))


async def test_record_to_a_disk_turned_read_only_keeps_relaying_and_says_once_why(
    tmp_path: Path, read_only_dir: ReadOnlyDirectory
):
    await _record_through(tmp_path, read_only_dir.path, reason=read_only_dir.reason,
                          fault=read_only_dir.make_read_only)


async def test_a_gateway_killed_while_writing_a_recording_leaves_it_replayable(tmp_path: Path):
    upstream = AnthropicUpstream()
    directory = tmp_path / "recorded"
    answered: list[str] = []
    async with running_upstream(upstream.handle) as upstream_url, cli_process(
        "serve", "--port", "0", "--record", str(directory), "--upstream", f"anthropic={upstream_url}",
        env=clean_env(), log=tmp_path / "gateway.log", preexec_fn=file_size_limit(48 * 1024),
        command=DIES_IN_A_WRITE,
    ) as gateway:
        with pytest.raises(anthropic.APIConnectionError):  # the gateway is gone
            for i in range(20):
                answered.append(await ask(gateway.url, f"question {i}", "session-a"))
        assert await gateway.process.wait() == -signal.SIGXFSZ  # killed by the kernel in a write
    (file,) = fixture_files(directory)
    recorded = load(file)
    assert 3 <= len(recorded.exchanges) <= len(answered)  # complete up to the write that was cut short
    async with cli_process("replay", str(file), "--port", "0", "--speed", "0", env=clean_env(),
                           log=tmp_path / "replay.log") as replay:
        replayed = [await ask(replay.url, f"question {i}", "session-a") for i in range(len(recorded.exchanges))]
    assert replayed == answered[: len(recorded.exchanges)]
    assert "Traceback" not in replay.stderr()


async def test_replay_of_a_file_cut_short_serves_its_complete_exchanges_and_warns_once(tmp_path: Path):
    upstream = AnthropicUpstream()
    async with running_upstream(upstream.handle) as upstream_url, running_gateway(
        Settings(upstreams={"anthropic": upstream_url}, record_dir=str(tmp_path / "recorded")), env={}
    ) as gateway:
        answered = [await ask(gateway.url, f"question {i}", "session-a") for i in range(3)]
    (file,) = fixture_files(tmp_path / "recorded")
    data = file.read_bytes()
    cut = data.rindex(b"lorem ipsum")  # inside the last exchange's answer
    (tmp_path / "cut.json").write_bytes(data[:cut])
    async with cli_process("replay", str(tmp_path / "cut.json"), "--port", "0", "--speed", "0", env=clean_env(),
                           log=tmp_path / "replay.log") as replay:
        replayed = [await ask(replay.url, f"question {i}", "session-a") for i in range(2)]
        with pytest.raises(anthropic.APIStatusError) as lost:
            await ask(replay.url, "question 2", "session-a")
    assert replayed == answered[:2]
    assert lost.value.status_code == 409  # nothing left to answer with
    lines = replay.stderr().splitlines()
    warnings = [line for line in lines if "cut short" in line]
    assert len(warnings) == 1 and str(tmp_path / "cut.json") in warnings[0], lines
    assert "loaded its first 2 complete exchange(s)" in warnings[0]
    assert "Traceback" not in replay.stderr()
