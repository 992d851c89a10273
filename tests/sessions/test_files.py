"""The file-tool table: each agent's file tools give the operation and the path(s) they touch.

Tool names and argument shapes come from the recorded fixtures (the calls models made, and the tool definitions the
agents sent) and from the client notes (Claude Code's `Read` with `file_path`, MCP tools renamed
`mcp__<server>__<tool>`, Codex's freeform `exec` tool), never from the table under test. Expected values are read from
the arguments by the plain readers below.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_gateway.recordings import fixtures
from llm_gateway.sessions.files import FileFacts, file_facts, normalize_tool_name
from tests.support import FIXTURES
from tests.support.exchanges import decoded_body

# ---------------------------------------------------------------------------------------------------------
# Tool calls as recorded: the ones a response made, and the ones a later request replays in its history


def _calls_in(node: Any) -> Iterator[tuple[str, Any]]:
    """(name, arguments) of every tool call in a request or response document, in any provider's shape."""
    if isinstance(node, dict):
        kiro = isinstance(node.get("toolUseId"), str) and "input" in node
        if kiro or node.get("type") == "tool_use":  # Kiro history, Anthropic
            yield node["name"], node["input"]
        elif isinstance(node.get("functionCall"), dict):  # Gemini
            yield node["functionCall"]["name"], node["functionCall"].get("args")
        for value in node.values():
            yield from _calls_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from _calls_in(value)


def _documents(directory: str) -> Iterator[Any]:
    """Every request body of a fixture directory, and every response body or SSE `data:` line that is JSON."""
    for path in fixtures.fixture_files(FIXTURES / directory):
        for exchange in fixtures.load(path).exchanges:
            body = decoded_body(exchange)
            pieces = [exchange.request.body, body, *(line[5:] for line in body.split(b"\n") if line[:5] == b"data:")]
            for piece in pieces:
                try:
                    yield json.loads(piece)
                except ValueError:
                    continue


def recorded_calls(directory: str) -> list[tuple[str, str]]:
    """(tool name, JSON arguments) of the calls in a fixture directory's JSON: made by a response, or replayed in
    a later request. (Kiro's and Bedrock's event-stream responses are not read here: their calls come back in the
    next request's history.)"""
    found = [(name, json.dumps(args)) for doc in _documents(directory) for name, args in _calls_in(doc)]
    return list(dict.fromkeys(found))


def kiro_tool_schema(name: str) -> dict[str, Any]:
    """A Kiro tool's input schema, as the recorded requests define it."""
    for doc in _documents("kiro"):
        for spec in _tool_specs(doc):
            if spec["name"] == name:
                return spec["inputSchema"]["json"]
    raise LookupError(name)


def _tool_specs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("toolSpecification"), dict):
            yield node["toolSpecification"]
        for value in node.values():
            yield from _tool_specs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _tool_specs(value)


KIRO = recorded_calls("kiro")
NOT_FILE_TOOLS = {"shell", "execute_bash", "introspect", "web_search", "web_fetch", "subagent", "todo_list", "use_aws",
                  "knowledge", "get_weather", "get_current_weather", "get_time", "get_capital", "get_temperature"}


def kiro_calls(name: str) -> list[dict[str, Any]]:
    return [json.loads(args) for tool, args in KIRO if tool == name]


def test_fixtures_hold_the_file_tools_read_here() -> None:
    assert {"read", "fs_read", "fs_write", "execute_bash"} <= {name for name, _ in KIRO}


# ---------------------------------------------------------------------------------------------------------
# Kiro CLI 2.x: read (operations of mode Line | Directory | Image), write (create | strReplace | insert), glob, grep


def _operation_paths(op: dict[str, Any]) -> list[str]:
    return [op["path"]] if "path" in op else list(op.get("image_paths", []))


def test_kiro_read_of_lines_or_images_is_a_read_of_every_path() -> None:
    calls = [c for c in kiro_calls("read") if all(op["mode"] in ("Line", "Image") for op in c["operations"])]
    assert any(op["mode"] == "Image" for c in calls for op in c["operations"])  # recorded in the image flow
    for call in calls:
        paths = tuple(p for op in call["operations"] for p in _operation_paths(op))
        assert file_facts("read", json.dumps(call)) == FileFacts("read", paths)


def test_kiro_read_of_directories_is_a_listing() -> None:
    calls = [c for c in kiro_calls("read") if all(op["mode"] == "Directory" for op in c["operations"])]
    assert calls
    for call in calls:
        paths = tuple(op["path"] for op in call["operations"])
        assert file_facts("read", json.dumps(call)) == FileFacts("list", paths)


def test_kiro_read_batch_of_files_and_a_directory_is_a_read_of_all() -> None:
    calls = [c for c in kiro_calls("read") if {op["mode"] for op in c["operations"]} == {"Line", "Directory"}]
    assert calls  # cli-2.4.1-session: two Cargo.toml files read and a src directory listed in one call
    for call in calls:
        paths = tuple(dict.fromkeys(op["path"] for op in call["operations"]))
        assert file_facts("read", json.dumps(call)) == FileFacts("read", paths)


@pytest.mark.parametrize(("command", "operation"), [("create", "write"), ("strReplace", "edit"), ("insert", "edit")])
def test_kiro_write_creates_or_edits_by_command(command: str, operation: str) -> None:
    schema = kiro_tool_schema("write")  # no write call was recorded: its definition gives the shape
    assert schema["properties"]["command"]["enum"] == ["create", "strReplace", "insert"]
    assert set(schema["required"]) == {"command", "path"}
    args = {"command": command, "path": "/home/user/project/src/main.rs", "oldStr": "a", "newStr": "b"}
    assert file_facts("write", json.dumps(args)) == FileFacts(operation, ("/home/user/project/src/main.rs",))


@pytest.mark.parametrize("name", ["glob", "grep"])
def test_kiro_glob_and_grep_search_under_their_path(name: str) -> None:
    schema = kiro_tool_schema(name)
    assert schema["required"] == ["pattern"] and "path" in schema["properties"]
    args = {"__tool_use_purpose": "find the tests", "pattern": "**/*.rs", "path": "/home/user/project"}
    assert file_facts(name, json.dumps(args)) == FileFacts("search", ("/home/user/project",))
    without_path = {"pattern": "TODO"}  # the current directory: no path to tell
    assert file_facts(name, json.dumps(without_path)) is None


# ---------------------------------------------------------------------------------------------------------
# Kiro / Amazon Q 1.x: fs_read (Line | Directory | Search | Image), fs_write (create | str_replace | insert | append)


@pytest.mark.parametrize(("mode", "operation"), [("Line", "read"), ("Directory", "list"), ("Search", "search")])
def test_fs_read_by_mode(mode: str, operation: str) -> None:
    (recorded,) = kiro_calls("fs_read")
    op = {**recorded["operations"][0], "mode": mode}
    assert file_facts("fs_read", json.dumps({"operations": [op]})) == FileFacts(operation, (op["path"],))


@pytest.mark.parametrize(("command", "operation"), [
    ("create", "write"), ("str_replace", "edit"), ("insert", "edit"), ("append", "edit"),
])
def test_fs_write_creates_or_edits_by_command(command: str, operation: str) -> None:
    (recorded,) = kiro_calls("fs_write")
    args = {**recorded, "command": command}
    assert file_facts("fs_write", json.dumps(args)) == FileFacts(operation, (recorded["path"],))


# ---------------------------------------------------------------------------------------------------------
# Claude Code, Gemini CLI, MCP servers


def test_claude_code_read_gives_its_file_path() -> None:
    # the recorded Read call is cut before its input arrives; the Read definitions beside it give the shape
    definitions = [tool for doc in _documents("anthropic") if isinstance(doc, dict)
                   for tool in doc.get("tools", []) if tool.get("name") == "Read"]
    assert definitions and all(list(tool["input_schema"]["properties"]) == ["file_path"] for tool in definitions)
    assert file_facts("Read", '{"file_path": "/etc/hosts"}') == FileFacts("read", ("/etc/hosts",))
    assert file_facts("Read", "{}") is None  # a call whose input never arrived


def test_gemini_cli_read_file_and_list_directory() -> None:
    calls = dict(recorded_calls("gemini"))
    assert file_facts("read_file", calls["read_file"]) == FileFacts("read", (json.loads(calls["read_file"])[
        "absolute_path"],))
    listing = json.dumps({"path": "/work/app"})  # list_directory's `path`, as its recorded definition has it
    assert file_facts("list_directory", listing) == FileFacts("list", ("/work/app",))


def test_mcp_filesystem_tool_through_claude_code_keeps_its_path() -> None:
    calls = [(n, a) for n, a in recorded_calls("mcp") if n.startswith("mcp__")]
    assert calls and normalize_tool_name(calls[0][0]) == "read_text_file"
    for name, args in calls:
        assert file_facts(name, args) == FileFacts("read", (json.loads(args)["path"],))


# ---------------------------------------------------------------------------------------------------------
# Tools that touch no file by name, and arguments of any shape


def test_recorded_tools_that_are_not_file_tools_give_nothing() -> None:
    calls = [(n, a) for d in ("anthropic", "bedrock", "gemini", "kiro", "ollama", "openai_chat") for n, a
             in recorded_calls(d) if n in NOT_FILE_TOOLS]
    assert {n for n, _ in calls} >= {"execute_bash", "introspect", "get_weather", "get_current_weather"}
    assert [file_facts(n, a) for n, a in calls] == [None] * len(calls)


def test_codex_freeform_exec_gives_nothing() -> None:
    script = 'const r = await tools.exec_command({cmd: "cat README.md"});\nconsole.log(r.output);'
    assert file_facts("exec", script) is None


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["path", "paths", "file_path", "operations", "mode", "image_paths", "command", "input"]),
        inner, max_size=4),
    max_leaves=10,
)
NAMES = ["read", "write", "fs_read", "fs_write", "read_many_files", "apply_patch", "Read", "move_file", "other"]


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(NAMES), args=JSON)
def test_arguments_of_any_shape_never_raise(name: str, args: Any) -> None:
    facts = file_facts(name, json.dumps(args))
    assert facts is None or (facts.paths and all(isinstance(p, str) for p in facts.paths))
