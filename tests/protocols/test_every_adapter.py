"""What every adapter owes, whatever its protocol. For every exchange of its fixture directory: one record however
the response body is cut (the recorded chunks, whole, byte by byte, anywhere), the same events from its parser
with the body cut in two at every offset and with trailing bytes, nothing raised by a body cut short, no content
built when capture is off. For any bytes at all, under any content type: nothing raised. What the
records say is checked per protocol, in the test_<protocol>.py files."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from llm_gateway.protocols import anthropic, bedrock, gemini, kiro, ollama, openai_chat, openai_responses
from llm_gateway.protocols.base import Adapter, HttpResponseHead, ResponseParser
from llm_gateway.protocols.errors import ErrorBodyParser
from llm_gateway.protocols.exchange import ChatRecord, ChatRequest, ExchangeBuilder
from llm_gateway.recordings import Exchange, fixtures
from tests.support import FIXTURES
from tests.support.exchanges import decoded_body, exchanges_of
from tests.support.records import assert_same_record_for_any_chunking, http_request, one_by_one, run_exchange, splits
from tests.support.split_anywhere import EVERY_OFFSET_UP_TO, assert_split_anywhere

CUTS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: a content type of each body framing the adapters read, and none
CONTENT_TYPES = [
    "text/event-stream", "application/json", "application/x-ndjson", "application/vnd.amazon.eventstream", "",
]


def _generate_assistant_response(exchange: Exchange) -> bool:
    """Routing sends the Kiro adapter only GenerateAssistantResponse calls; their 2xx bodies are its to read."""
    target = fixtures.header(exchange.request.headers, "x-amz-target") or ""
    return target.endswith("GenerateAssistantResponse") and exchange.response.status == 200


def _calls_to(suffix: str) -> Callable[[Exchange], bool]:
    """Model calls only: the OpenAI recordings also hold other calls (the Agents SDK's trace uploads)."""
    return lambda exchange: exchange.request.path.partition("?")[0].endswith(suffix)


#: fixture directory -> its adapter, and which of its exchanges that adapter reads (None: all)
ADAPTERS: dict[str, tuple[Adapter, Callable[[Exchange], bool] | None]] = {
    "anthropic": (anthropic.ADAPTER, None),
    "bedrock": (bedrock.ADAPTER, None),
    "gemini": (gemini.ADAPTER, None),
    "kiro": (kiro.ADAPTER, _generate_assistant_response),
    "ollama": (ollama.ADAPTER, None),
    "openai_chat": (openai_chat.ADAPTER, _calls_to("/chat/completions")),
    "openai_responses": (openai_responses.ADAPTER, _calls_to("/responses")),
}
EXCHANGES = [
    pytest.param(adapter, exchange, id=f"{directory}/{name}")
    for directory, (adapter, keep) in ADAPTERS.items()
    for name, exchange in exchanges_of(FIXTURES / directory, keep)
]
ONE_PER_ADAPTER = [pytest.param(adapter, id=directory) for directory, (adapter, _) in ADAPTERS.items()]


# ---------------------------------------------------------------------------------------------------------
# Every exchange


@pytest.mark.parametrize(("adapter", "exchange"), EXCHANGES)
def test_recorded_whole_and_byte_by_byte_bodies_give_one_record(adapter: Adapter, exchange: Exchange) -> None:
    assert_same_record_for_any_chunking(adapter, exchange, one_by_one(exchange.response.body))


@pytest.mark.parametrize(("adapter", "exchange"), EXCHANGES)
@CUTS
@given(data=st.data())
def test_body_cut_anywhere_gives_the_same_record(adapter: Adapter, exchange: Exchange, data: st.DataObject) -> None:
    body = exchange.response.body
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=30))
    assert_same_record_for_any_chunking(adapter, exchange, splits(body, cuts))


def _parser_factory(adapter: Adapter, exchange: Exchange) -> Callable[[], ResponseParser]:
    """Fresh parsers for the exchange's response body, chosen as `ExchangeRun` chooses them."""
    response = exchange.response
    if not 200 <= response.status < 300:
        return lambda: ErrorBodyParser(response.status)
    try:
        request = adapter.parse_request(http_request(exchange), False)
    except ValueError:
        request = ChatRequest()
    head = HttpResponseHead(response.status, CIMultiDict(response.headers))
    return lambda: adapter.response_parser(request, head)


@pytest.mark.parametrize(("adapter", "exchange"), EXCHANGES)
def test_body_cut_in_two_anywhere_and_with_trailing_bytes_gives_the_same_events(adapter: Adapter,
                                                                                 exchange: Exchange) -> None:
    """A body up to `EVERY_OFFSET_UP_TO` bytes is cut at every offset. A larger one, to keep this test a few
    seconds long, at every offset near an event boundary (for an even spread of its events, the last bytes of
    one frame and the first of the next) plus a stride over the rest; the byte-by-byte and random-cut tests
    above cover every offset of those bodies at record level."""
    body = decoded_body(exchange)
    offsets = assert_split_anywhere(_parser_factory(adapter, exchange), body)
    assert len(offsets) == len(body) + 1 or len(body) > EVERY_OFFSET_UP_TO


@pytest.mark.parametrize(("adapter", "exchange"), EXCHANGES)
@CUTS
@given(data=st.data())
def test_body_cut_short_never_raises(adapter: Adapter, exchange: Exchange, data: st.DataObject) -> None:
    body = exchange.response.body
    end = data.draw(st.integers(0, len(body)))
    # the parser itself, where an exception would escape (`ExchangeRun` turns one into a "response:" issue)
    parser = adapter.response_parser(adapter.parse_request(http_request(exchange), False),
                                     HttpResponseHead(200, CIMultiDict()))
    parser.feed(decoded_body(exchange)[:end])
    parser.close()
    for capture in (False, True):
        record = run_exchange(adapter, exchange, chunks=[body[:end]], capture=capture)
        assert not [issue for issue in record.parse_issues if issue.startswith("response:")]  # nothing raised


@pytest.mark.parametrize(("adapter", "exchange"), EXCHANGES)
def test_capture_off_builds_no_content(adapter: Adapter, exchange: Exchange) -> None:
    record = run_exchange(adapter, exchange, capture=False)
    request = record.request
    assert (request.system_instructions, request.input_messages, request.tool_definitions) == (None, None, None)
    assert record.output_messages is None
    assert all(result.content is None for result in request.tool_results)


# ---------------------------------------------------------------------------------------------------------
# Any bytes


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize("adapter", ONE_PER_ADAPTER)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(garbage=st.binary(max_size=2048), cuts=st.lists(st.integers(0, 2048), max_size=8), stream=st.booleans())
def test_arbitrary_bytes_never_raise(adapter: Adapter, content_type: str, garbage: bytes, cuts: list[int],
                                     stream: bool) -> None:
    parser = adapter.response_parser(ChatRequest(stream=stream),
                                     HttpResponseHead(200, CIMultiDict({"content-type": content_type})))
    events = [event for chunk in splits(garbage, cuts) for event in parser.feed(chunk)]
    builder = ExchangeBuilder(ChatRequest(), 200, capture=True)
    builder.add(1, events + parser.close())
    assert isinstance(builder.finish(), ChatRecord)
