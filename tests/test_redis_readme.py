"""The README's Redis examples (```python redis blocks) run as written, against a real redis-server."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python redis\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_redis_examples() -> None:
    assert BLOCKS


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_redis_example_runs(index: int, tmp_path: Path, redis_server: Any) -> None:
    script = tmp_path / f"redis_example_{index}.py"
    script.write_text(BLOCKS[index])
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, REDIS_URL=redis_server.url))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("GUILD_CREATE") == 4, result.stdout
