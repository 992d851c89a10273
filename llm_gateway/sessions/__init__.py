"""Agent sessions: who is calling (`identity`), the state machine that groups calls into sessions, agents
and tool runs (`tracker`), what a tool touched on disk (`files`), and the terminal tree (`tree`)."""
