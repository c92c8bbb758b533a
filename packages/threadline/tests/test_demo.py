"""The demo command prints the scripted agent run as a tree."""

from __future__ import annotations

import io
import re
import subprocess
import sys

from threadline.demo import main


def test_demo_prints_the_agent_tree() -> None:
    out = io.StringIO()
    assert main([], out=out) == 0
    text = out.getvalue()
    lines = [re.sub(r" \(\d+\.\d ms\)$", "", line) for line in text.splitlines()]
    shape = [line.split(" [")[0] for line in lines if "[" in line]
    assert shape == [
        "invoke_agent weather-assistant",
        "  chat gpt-4o-mini",
        "  execute_tool get_weather",
        "  chat gpt-4o-mini",
    ]
    assert "gen_ai.usage.input_tokens=203" in lines[2]  # agent sums both model calls
    assert all("session.id=demo-session" in line for line in lines if "[" in line)
    assert re.search(r"\(\d+\.\d ms\)", text)


def test_console_entry_point_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "threadline", "demo"], capture_output=True, text=True, check=True
    )
    assert "invoke_agent weather-assistant [INTERNAL]" in result.stdout
