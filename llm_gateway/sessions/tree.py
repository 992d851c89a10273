"""A finished session as a tree people can read in a terminal (LLM_GATEWAY_PRINT=tree, and the demo)."""

from __future__ import annotations

from llm_gateway.sessions.files import file_facts
from llm_gateway.sessions.tracker import AgentState, CallNode, SessionState, ToolRun


def _duration(start_ns: int, end_ns: int | None) -> str:
    seconds = ((end_ns or start_ns) - start_ns) / 1e9
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.1f}s"


def _tokens(input_tokens: int | None, output_tokens: int | None) -> str:
    if input_tokens is None and output_tokens is None:
        return "  tokens not reported"
    shown = ["?" if n is None else str(n) for n in (input_tokens, output_tokens)]
    return f"  tokens in={shown[0]} out={shown[1]}"


def _call_line(call: CallNode) -> str:
    record = call.record
    parts = [f"[chat] {call.model or '?'} ({_duration(call.started_ns, call.ended_ns)})"]
    if record is not None:
        if record.input_tokens is not None or record.output_tokens is not None:
            parts.append(f"tokens in={record.input_tokens if record.input_tokens is not None else '?'} "
                         f"out={record.output_tokens if record.output_tokens is not None else '?'}")
        if record.cache_read:
            parts.append(f"cache_read={record.cache_read}")
        if record.finish_reasons:
            parts.append("finish=" + ",".join(record.finish_reasons))
        if record.error_type:
            parts.append(f"ERROR {record.error_type}")
    if call.auxiliary:
        parts.append("(auxiliary)")
    return "  ".join(parts)


def _tool_line(run: ToolRun) -> str:
    parts = [f"[execute_tool] {run.name} ({_duration(run.started_ns, run.ended_ns)})", run.outcome or "pending"]
    facts = file_facts(run.name, run.arguments)
    if facts is not None:
        parts.append(f"{facts.operation} {', '.join(facts.paths)}")
    return "  ".join(parts)


def _agent_lines(agent: AgentState, depth: int) -> list[str]:
    pad = "  " * depth
    tokens = _tokens(agent.input_tokens, agent.output_tokens)
    models = f"  {', '.join(agent.models)}" if agent.models else ""
    lines = [f"{pad}[invoke_agent] {agent.name} ({_duration(agent.started_ns, agent.ended_ns)}){models}{tokens}"]
    items: list[tuple[int, int, object]] = [(c.started_ns, 0, c) for c in agent.calls]
    items += [(t.started_ns, 1, t) for t in agent.tools]
    items += [(a.started_ns, 2, a) for a in agent.children]
    for _, _, item in sorted(items, key=lambda x: (x[0], x[1])):
        if isinstance(item, CallNode):
            lines.append(f"{pad}  {_call_line(item)}")
        elif isinstance(item, ToolRun):
            lines.append(f"{pad}  {_tool_line(item)}")
        else:
            lines += _agent_lines(item, depth + 1)
    return lines


def render(session: SessionState) -> str:
    head = (f"[session] {session.client} session ({_duration(session.started_ns, session.ended_ns)})  "
            f"{'conversation' if session.explicit else 'fingerprint'}={session.key}  "
            f"calls={session.calls}{_tokens(session.input_tokens, session.output_tokens)}")
    lines = [head]
    roots = [a for a in session.agents.values() if a.parent is None]
    for agent in roots:
        lines += _agent_lines(agent, 1)
    return "\n".join(lines)
