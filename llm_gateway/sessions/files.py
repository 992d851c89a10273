"""What a tool call did to files: the operation and the path(s), for the known file tools of each agent.

Table-driven: tool name -> (operation, argument keys that hold paths). Arguments are the call's JSON.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from llm_gateway.protocols.exchange import json_or_text


@dataclass(frozen=True, slots=True)
class FileFacts:
    operation: str  # read | write | edit | delete | list | search | move
    paths: tuple[str, ...]


# tool name (case-sensitive, as agents send it) -> (operation, keys holding one path, keys holding a list)
_TOOLS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    # Claude Code
    "Read": ("read", ("file_path",), ()),
    "Write": ("write", ("file_path",), ()),
    "Edit": ("edit", ("file_path",), ()),
    "MultiEdit": ("edit", ("file_path",), ()),
    "NotebookEdit": ("edit", ("notebook_path",), ()),
    "Glob": ("search", ("path",), ()),
    "Grep": ("search", ("path",), ()),
    "LS": ("list", ("path",), ()),
    # Gemini CLI
    "read_file": ("read", ("absolute_path", "file_path", "path"), ()),
    "write_file": ("write", ("file_path", "path"), ()),
    "replace": ("edit", ("file_path",), ()),
    "read_many_files": ("read", (), ("paths",)),
    "list_directory": ("list", ("path", "dir_path"), ()),
    "glob": ("search", ("path", "dir_path"), ()),
    "search_file_content": ("search", ("path", "dir_path"), ()),
    # opencode
    "read": ("read", ("filePath", "file_path", "path"), ()),
    "write": ("write", ("filePath", "file_path", "path"), ()),
    "edit": ("edit", ("filePath", "file_path", "path"), ()),
    "list": ("list", ("path",), ()),
    "grep": ("search", ("path",), ()),
    # Kiro / Amazon Q (fs_write's own `path`; fs_read and Kiro 2.x `read` use `operations`, read below; Kiro
    # 2.x `write` is the opencode entry's `path` with a `command`)
    "fs_read": ("read", ("path",), ()),
    "fs_write": ("write", ("path",), ()),
    # MCP filesystem server
    "read_text_file": ("read", ("path",), ()),
    "read_media_file": ("read", ("path",), ()),
    "read_multiple_files": ("read", (), ("paths",)),
    "edit_file": ("edit", ("path",), ()),
    "create_directory": ("write", ("path",), ()),
    "directory_tree": ("list", ("path",), ()),
    "list_directory_with_sizes": ("list", ("path",), ()),
    "search_files": ("search", ("path",), ()),
    "get_file_info": ("read", ("path",), ()),
    "move_file": ("move", ("source", "destination"), ()),
}
#: Kiro `read` / `fs_read` operation modes that are not a read (Line and Image are)
_MODE_OPERATIONS = {"Directory": "list", "Search": "search"}
#: Kiro `write` / `fs_write` commands that change an existing file (`create` writes a whole one)
_EDIT_COMMANDS = frozenset({"str_replace", "strReplace", "insert", "append"})
_PATCH_FILE = re.compile(r"^\*\*\* (Add|Update|Delete) File: (.+)$", re.MULTILINE)
_PATCH_OPERATION = {"Add": "write", "Update": "edit", "Delete": "delete"}


def normalize_tool_name(name: str) -> str:
    """Agents rename MCP tools: Claude Code `mcp__server__tool`, Kiro `@server/tool`."""
    if name.startswith("mcp__"):
        return name.split("__", 2)[-1]
    if name.startswith("@") and "/" in name:
        return name.split("/", 1)[1]
    return name


def file_facts(tool_name: str, arguments: str) -> FileFacts | None:
    """The file operation a call performs, or None when the tool is not a known file tool."""
    args: Any = json_or_text(arguments)  # freeform input (Codex custom tools): apply_patch bodies are read below
    name = normalize_tool_name(tool_name)
    if name == "apply_patch":
        if isinstance(args, dict):
            args = args.get("input", args.get("patch", ""))
        text = args if isinstance(args, str) else ""
        found = _PATCH_FILE.findall(text)
        if not found:
            return None
        operations = {_PATCH_OPERATION[kind] for kind, _ in found}
        return FileFacts(operations.pop() if len(operations) == 1 else "edit", tuple(p.strip() for _, p in found))
    if not isinstance(args, dict):
        return None
    spec = _TOOLS.get(name)
    if spec is None:
        return None
    operation, single, lists = spec
    paths = [args[k] for k in single if isinstance(args.get(k), str)]
    for key in lists:
        listed = args.get(key)
        paths += [p for p in listed if isinstance(p, str)] if isinstance(listed, list) else []
    operations = args.get("operations")
    if isinstance(operations, list):  # Kiro read / fs_read: [{"mode", "path"}, {"mode": "Image", "image_paths"}]
        modes: set[str] = set()
        for op in operations:
            if not isinstance(op, dict):
                continue
            images = op.get("image_paths")
            found = [p for p in (op.get("path"), *(images if isinstance(images, list) else ())) if isinstance(p, str)]
            if found:
                paths += found
                mode = op.get("mode")
                modes.add(_MODE_OPERATIONS.get(mode, operation) if isinstance(mode, str) else operation)
        if len(modes) == 1:  # a batch of several kinds (files read, a directory listed) stays a read
            operation = modes.pop()
    command = args.get("command")
    if name in ("fs_write", "write") and isinstance(command, str) and command in _EDIT_COMMANDS:
        operation = "edit"
    return FileFacts(operation, tuple(dict.fromkeys(paths))) if paths else None
