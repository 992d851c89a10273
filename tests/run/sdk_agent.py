"""An "agent" for `llm-gateway run` tests: one call with the anthropic SDK and one with the openai SDK, with no
base URL, proxy or certificate in the code (the environment `run` gives says where to go), then exits with the
status given. `--wait FILE`: after the calls, write FILE and wait for a signal; `--on-term N`: exit N on SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

import anthropic
import openai


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("status", type=int)
    parser.add_argument("--wait", type=Path)
    parser.add_argument("--on-term", type=int)
    args = parser.parse_args()
    if args.on_term is not None:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(args.on_term))
    message = anthropic.Anthropic(api_key="sk-ant-test", max_retries=0).messages.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "Say hello."}])
    print("anthropic:", message.content[0].text, flush=True)
    completion = openai.OpenAI(api_key="sk-test", max_retries=0).chat.completions.create(
        model="gpt-4.1-mini", messages=[{"role": "user", "content": "Say hello."}])
    print("openai:", completion.choices[0].message.content, flush=True)
    if args.wait is not None:
        args.wait.write_text("called")
        while True:
            time.sleep(60)
    return args.status


if __name__ == "__main__":
    sys.exit(main())
