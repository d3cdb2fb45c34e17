"""The hand-written stub of the Rust extension matches what the extension really exports."""

import subprocess
import sys


def test_core_stub_matches_runtime() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy.stubtest", "pylstm._core"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
