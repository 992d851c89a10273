"""A finished session as a tree people can read in a terminal (LLM_GATEWAY_PRINT=tree, and the demo).

Each call shows its cost as its span has it (USD when priced, Kiro's credits), and each turn and the session the
sums over their calls: a turn its own calls (a subagent's turn has its own line), the session every call. A sum with
priced calls says how many of the finished calls had no price, and starts with `>=` when the tree no longer keeps
every call it counted (`KEPT_PER_AGENT`).
"""

from __future__ import annotations

import math

from llm_gateway.sessions.files import file_facts
from llm_gateway.sessions.state import CallNode, SessionState, ToolRun, TurnState, Usage


def _duration(start_ns: int, end_ns: int | None) -> str:
    seconds = ((end_ns or start_ns) - start_ns) / 1e9
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.1f}s"


def _tokens(usage: Usage) -> str:
    if usage.input_tokens is None and usage.output_tokens is None:
        return "  tokens not reported"
    shown = ["?" if n is None else str(n) for n in (usage.input_tokens, usage.output_tokens)]
    return f"  tokens in={shown[0]} out={shown[1]}"


def _amount(value: float) -> str:
    """Three significant digits, at least two decimals: 12.30, 0.184, 0.0123, 0.000123."""
    if value <= 0:
        return "0.00"
    return f"{value:.{max(2, 2 - math.floor(math.log10(value)))}f}"


def _call_cost(call: CallNode) -> list[str]:
    parts = [] if call.cost_usd is None else [f"cost=${_amount(call.cost_usd)}"]
    if call.kiro_credits is not None:
        parts.append(f"credits={_amount(call.kiro_credits)}")
    return parts


def _cost(calls: list[CallNode], counted: int) -> str:
    """The sums over `calls`, of the `counted` calls a turn or session had (see the module docstring)."""
    finished = [c for c in calls if c.record is not None]
    usd = [c.cost_usd for c in finished if c.cost_usd is not None]
    credits = [c.kiro_credits for c in finished if c.kiro_credits is not None]
    at_least = ">=" if len(calls) < counted else ""
    parts = []
    if usd:
        unpriced = sum(1 for c in finished if c.cost_usd is None and c.kiro_credits is None)
        parts.append(f"cost={at_least}${_amount(sum(usd))}{f' ({unpriced} unpriced)' if unpriced else ''}")
    if credits:
        parts.append(f"credits={at_least}{_amount(sum(credits))}")
    return "".join(f"  {part}" for part in parts)


def _calls(turn: TurnState) -> list[CallNode]:
    return [i for i in turn.items if isinstance(i, CallNode)]


def _call_line(call: CallNode) -> str:
    record = call.record
    parts = [f"[chat] {call.model or '?'} ({_duration(call.started_ns, call.ended_ns)})"]
    if record is not None:
        if record.input_tokens is not None or record.output_tokens is not None:
            parts.append(f"tokens in={record.input_tokens if record.input_tokens is not None else '?'} "
                         f"out={record.output_tokens if record.output_tokens is not None else '?'}")
        if record.cache_read:
            parts.append(f"cache_read={record.cache_read}")
        parts += _call_cost(call)
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


def _turn_lines(turn: TurnState, depth: int) -> list[str]:
    pad = "  " * depth
    models = f"  {', '.join(turn.models)}" if turn.models else ""
    lines = [f"{pad}[invoke_agent] {turn.agent.name} #{turn.number} "
             f"({_duration(turn.started_ns, turn.ended_ns)}){models}{_tokens(turn.usage)}"
             f"{_cost(_calls(turn), turn.call_count)}"]
    for item in sorted(turn.items, key=lambda i: (i.started_ns, 1 if isinstance(i, TurnState) else 0)):
        if isinstance(item, CallNode):
            lines.append(f"{pad}  {_call_line(item)}")
        elif isinstance(item, ToolRun):
            lines.append(f"{pad}  {_tool_line(item)}")
        else:
            lines += _turn_lines(item, depth + 1)
    return lines


def render(session: SessionState) -> str:
    head = (f"[session] {session.client} session ({_duration(session.started_ns, session.ended_ns)})  "
            f"{'conversation' if session.explicit else 'fingerprint'}={session.key}  "
            f"calls={session.calls}  turns={session.turns}{_tokens(session.usage)}"
            f"{_cost([c for a in session.all_agents for t in a.turns for c in _calls(t)], session.calls)}")
    lines = [head]
    nested = {id(i) for a in session.all_agents for t in a.turns for i in t.items if isinstance(i, TurnState)}
    turns = [t for a in session.all_agents for t in a.turns if id(t) not in nested]
    for turn in sorted(turns, key=lambda t: t.started_ns):
        lines += _turn_lines(turn, 1)
    return "\n".join(lines)
