"""Convert other projects' recorded provider traffic into fixtures/ (run once; the output is committed). The input
is a byte-for-byte copy of those recordings kept beside this repository (`SHARED`); the origin, commit and license
of each file are in the tables below and in fixtures/SOURCES.md."""

from __future__ import annotations

import sys
from pathlib import Path

from converters import import_anthropic_snapshot, import_cc_core_rows

from llm_gateway.recordings import save
from llm_gateway.recordings.importers import import_vcr

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "fixtures-upstream"
OUT = ROOT / "fixtures"

OTEL = ("open-telemetry/opentelemetry-python-contrib", "466ae4c00de77d1f54f77a9600f1d08eba2306b5", "Apache-2.0")
OPENLLMETRY = ("traceloop/openllmetry", "93429cfb9767e6b51db6cb35f6b70f758117669a", "Apache-2.0")
OPENINFERENCE = ("Arize-ai/openinference", "1fe497f1d9f45a07eee55d97fe185e020560f9c7", "Apache-2.0")
PYDANTIC = ("pydantic/pydantic-ai", "4fda38988f2939fa6ea9cdefcf120693e10ef491", "MIT")
ANTHROPIC_SDK = ("anthropics/anthropic-sdk-python", "009b035305e0724ce108ebd796935f91711fc6e1", "MIT")
CC_CORE = ("wjsoj/cc-core", "43917989decc74f7ed93ea221ee78504dd6ee905", "MIT")

# (shared file, project fixture, origin, upstream path, description)
VCR = [
    ("anthropic/test_anthropic_tools_streaming_legacy.yaml", "anthropic/tools-streaming.json", OPENLLMETRY,
     "packages/opentelemetry-instrumentation-anthropic/tests/cassettes/test_messages/test_anthropic_tools_streaming_legacy.yaml",
     "Messages, claude-3-5-sonnet, streamed text then two tool_use blocks"),
    ("anthropic/test_anthropic_instrumentation_multiple_tool_calling_streaming.yaml",
     "anthropic/parallel-tools-streaming.json", OPENINFERENCE,
     "python/instrumentation/openinference-instrumentation-anthropic/tests/openinference/anthropic/cassettes/"
     "test_instrumentor/test_anthropic_instrumentation_multiple_tool_calling_streaming.yaml",
     "Messages, claude-sonnet-4-6, streamed parallel tool_use blocks"),
    ("anthropic/test_anthropic_tools_history_legacy.yaml", "anthropic/tools-history-gzip.json", OPENLLMETRY,
     "packages/opentelemetry-instrumentation-anthropic/tests/cassettes/test_messages/test_anthropic_tools_history_legacy.yaml",
     "Messages, claude-3-5-haiku, not streamed, history with tool_result, gzip response"),
    ("anthropic/test_anthropic_thinking_streaming_legacy.yaml", "anthropic/thinking-streaming.json", OPENLLMETRY,
     "packages/opentelemetry-instrumentation-anthropic/tests/cassettes/test_thinking/test_anthropic_thinking_streaming_legacy.yaml",
     "Messages, claude-3-7-sonnet, extended thinking streamed"),
    ("openai/test_chat_completion_multiple_tools_streaming_with_content.yaml",
     "openai_chat/parallel-tools-streaming.json", OTEL,
     "instrumentation-genai/opentelemetry-instrumentation-openai-v2/tests/cassettes/"
     "test_chat_completion_multiple_tools_streaming_with_content.yaml",
     "Chat Completions, gpt-4o-mini, include_usage, two parallel streamed tool_calls"),
    ("openai/test_chat_completion_tool_calls_with_content.yaml", "openai_chat/tool-loop.json", OTEL,
     "instrumentation-genai/opentelemetry-instrumentation-openai-v2/tests/cassettes/"
     "test_chat_completion_tool_calls_with_content.yaml",
     "Chat Completions, gpt-4o-mini, not streamed, 2-turn tool loop"),
    ("openai/test_run_stream_sync_streams_real_model.yaml", "openai_chat/tool-loop-streaming.json", PYDANTIC,
     "tests/models/cassettes/test_openai/test_run_stream_sync_streams_real_model.yaml",
     "Chat Completions, gpt-4o-mini, 2-turn tool loop, both streamed"),
    ("openai/test_responses_create_streaming[content_mode0].yaml", "openai_responses/text-streaming.json", OTEL,
     "instrumentation-genai/opentelemetry-instrumentation-openai-v2/tests/cassettes/"
     "test_responses_create_streaming[content_mode0].yaml",
     "Responses, gpt-4o-mini, streamed text"),
    ("openai/test_responses_create_captures_tool_call_content[content_mode0].yaml",
     "openai_responses/function-call.json", OTEL,
     "instrumentation-genai/opentelemetry-instrumentation-openai-v2/tests/cassettes/"
     "test_responses_create_captures_tool_call_content[content_mode0].yaml",
     "Responses, gpt-4o-mini, not streamed, function_call output"),
    ("openai/test_openai_responses_stream.yaml", "openai_responses/tool-loop-streaming.json", PYDANTIC,
     "tests/models/cassettes/test_openai_responses/test_openai_responses_stream.yaml",
     "Responses, gpt-4o, 2-turn tool loop, both streamed"),
    ("openai/test_music_composer_handoff_hierarchy.yaml", "openai_responses/agents-handoff.json", OPENLLMETRY,
     "packages/opentelemetry-instrumentation-openai-agents/tests/cassettes/test_openai_agents/"
     "test_music_composer_handoff_hierarchy.yaml",
     "openai-agents run: 3 streamed Responses calls with a handoff and a function tool, plus trace ingest calls"),
    ("bedrock/test_converse_stream_tool_call_parsing_errors.yaml", "bedrock/converse-stream-tool-loop.json", OTEL,
     "instrumentation/opentelemetry-instrumentation-botocore/tests/cassettes/test_converse_stream_tool_call_parsing_errors.yaml",
     "ConverseStream, claude-3-sonnet, 2-turn tool loop"),
    ("bedrock/test_converse_stream_with_content_tool_call.yaml", "bedrock/converse-stream-parallel-tools.json", OTEL,
     "instrumentation/opentelemetry-instrumentation-botocore/tests/cassettes/test_converse_stream_with_content_tool_call.yaml",
     "ConverseStream, nova-micro, 2-turn loop with 2 parallel toolUse"),
    ("bedrock/test_converse_tool_call_with_content.yaml", "bedrock/converse-tool-loop.json", OTEL,
     "instrumentation/opentelemetry-instrumentation-botocore/tests/cassettes/test_converse_tool_call_with_content.yaml",
     "Converse (not streamed), nova-micro, 2-turn tool loop"),
    ("bedrock/test_invoke_model_with_response_stream_with_content_tool_call[anthropic.claude].yaml",
     "bedrock/invoke-stream-anthropic-tool-loop.json", OTEL,
     "instrumentation/opentelemetry-instrumentation-botocore/tests/cassettes/"
     "test_invoke_model_with_response_stream_with_content_tool_call[anthropic.claude].yaml",
     "InvokeModelWithResponseStream, claude-3-5-sonnet native events, 2-turn tool loop"),
    ("gemini/test_google_model_iter_stream.yaml", "gemini/tool-loop-streaming.json", PYDANTIC,
     "tests/models/cassettes/test_google/test_google_model_iter_stream.yaml",
     "streamGenerateContent alt=sse, gemini-2.0-flash, 3-turn tool loop"),
    ("gemini/test_streaming_reasoning_with_multiple_tool_calls.yaml", "gemini/reasoning-parallel-tools.json",
     OPENINFERENCE,
     "python/instrumentation/openinference-instrumentation-google-genai/tests/cassettes/test_instrumentation/"
     "test_streaming_reasoning_with_multiple_tool_calls.yaml",
     "streamGenerateContent alt=sse, thinking, 2 functionCall parts"),
    ("gemini/test_generate_content_with_automatic_tool_calling.yaml", "gemini/tool-loop.json", OPENINFERENCE,
     "python/instrumentation/openinference-instrumentation-google-genai/tests/cassettes/test_instrumentation/"
     "test_generate_content_with_automatic_tool_calling.yaml",
     "generateContent (not streamed), gemini-2.0-flash, 2-turn tool loop"),
    ("gemini/test_streaming[logcontent-gemini-2.5-flash-vertexaiapi-sync-default].yaml",
     "gemini/vertex-streaming.json", OTEL,
     "instrumentation-genai/opentelemetry-instrumentation-google-genai/tests/generate_content/cassettes/"
     "test_streaming[logcontent-gemini-2.5-flash-vertexaiapi-sync-default].yaml",
     "Vertex AI streamGenerateContent alt=sse, gemini-2.5-flash, text"),
]


def _source(origin: tuple[str, str, str], path: str, description: str) -> dict[str, str]:
    repo, commit, license_ = origin
    return {"description": description, "origin": repo, "path": path, "commit": commit, "license": license_,
            "copied_via": "shared/fixtures-upstream (see fixtures/SOURCES.md)"}


def main() -> int:
    if not SHARED.is_dir():
        print(f"{SHARED} not found", file=sys.stderr)
        return 1
    for shared, target, origin, path, description in VCR:
        save(import_vcr(SHARED / shared, _source(origin, path, description)), OUT / target)
    snap = "anthropic/555fb399-a54c-455b-9ac5-2c9673f18e12.json"
    save(import_anthropic_snapshot(SHARED / snap, _source(
        ANTHROPIC_SDK,
        "tests/lib/tools/__inline_snapshot__/test_runners/TestSyncRunTools/555fb399-a54c-455b-9ac5-2c9673f18e12.json",
        "Messages ?beta=true, claude-haiku-4-5, 2-turn tool loop, both streamed")),
        OUT / "anthropic/tool-runner-loop.json")
    rows = sorted((SHARED / "kiro/cc-core-kiro-cli-2.4.1/rows").glob("*.json"))
    save(import_cc_core_rows(rows, _source(
        CC_CORE, "crack/kiro/rows/", "Kiro CLI 2.4.1 session: ListAvailableModels and 6 GenerateAssistantResponse "
        "turns (text, tool calls, parallel tool calls with results, checkpoint side call, opus-4.7 with effort)"),
        name="kiro-cli-2.4.1-session"), OUT / "kiro/cli-2.4.1-session.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
