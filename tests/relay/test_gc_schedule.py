"""Full garbage collections (`gc_schedule.py`): when nothing is in flight, or seldom; and the relay's count of what
is in flight, which they wait for."""

from __future__ import annotations

import asyncio
import gc
import time

import aiohttp
import pytest

from llm_gateway.config import Settings
from llm_gateway.gc_schedule import FullCollections, collect_when_due, take_over_full_collections
from tests.support.servers import held_stream, running_gateway, running_upstream


def test_a_full_collection_waits_for_a_moment_with_nothing_in_flight_or_for_the_forced_interval():
    schedule = FullCollections(last_s=0.0, idle_every_s=60.0, forced_every_s=600.0)
    assert not schedule.due(30.0, in_flight=0)  # ran half a minute ago
    assert not schedule.due(61.0, in_flight=3)  # streams are open: a collection would stall them
    assert schedule.due(61.0, in_flight=0)
    schedule.ran(61.0)
    assert not schedule.due(600.0, in_flight=5)
    assert schedule.due(661.0, in_flight=5)  # traffic that never pauses still gets one every ten minutes


def test_young_collections_stay_automatic_and_full_ones_are_taken_over():
    before = gc.get_threshold()
    try:
        take_over_full_collections()
        young0, young1, full = gc.get_threshold()
        assert young0 > 0 and young1 > 0 and full >= 1 << 30
    finally:
        gc.set_threshold(*before)


async def test_the_collector_waits_while_exchanges_are_in_flight_and_runs_once_none_is(
        monkeypatch: pytest.MonkeyPatch):
    collections: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(1) or 0)
    in_flight = [2]
    schedule = FullCollections(last_s=time.monotonic(), idle_every_s=0.0, forced_every_s=3600.0)
    task = asyncio.create_task(collect_when_due(lambda: in_flight[0], every_s=0.01, schedule=schedule))
    try:
        await asyncio.sleep(0.1)
        assert collections == []
        in_flight[0] = 0
        await asyncio.sleep(0.1)
        assert collections
    finally:
        task.cancel()


async def test_the_relay_counts_an_exchange_in_flight_until_its_last_byte():
    release = asyncio.Event()

    async with running_upstream(held_stream(release)) as upstream, \
            running_gateway(Settings(catch_all=upstream, force_all=True)) as gateway:
        relay = gateway.relay
        assert relay.in_flight == 0
        async with aiohttp.ClientSession() as client, \
                client.post(f"{gateway.url}/v1/messages", json={"model": "m", "stream": True}) as response:
            assert await response.content.readline() == b"data: first\n"
            assert relay.in_flight == 1
            release.set()
            assert (await response.read()).endswith(b"data: last\n\n")
        for _ in range(100):
            if relay.in_flight == 0:
                break
            await asyncio.sleep(0.01)
        assert relay.in_flight == 0


async def test_relaying_leaves_none_of_the_gateways_objects_to_the_cyclic_collector():
    # Full collections wait for a quiet moment: what the relay makes per request must go by reference counting.
    from aiohttp import web

    async def answer(request: web.BaseRequest) -> web.StreamResponse:
        if request.path.endswith("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for n in range(3):
                await response.write(b"data: %d\n\n" % n)
                await asyncio.sleep(0.001)
            return response
        return web.json_response({"ok": True})

    async with running_upstream(answer) as upstream, \
            running_gateway(Settings(catch_all=upstream, force_all=True)) as gateway, \
            aiohttp.ClientSession() as client:
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for path in ("/v1/messages", "/v1/stream") * 20:
                async with client.post(gateway.url + path, data=b"{}") as response:
                    await response.read()
            gc.collect()
            ours = [type(o).__qualname__ for o in gc.garbage if type(o).__module__.startswith("llm_gateway")]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert ours == []
