"""TensorFlow's start-up notices are filtered out of stderr; anything else still shows."""

import subprocess
import sys

from mnist_demo.config import PACKAGE_DIR

SCRIPT = """
import sys
from mnist_demo.quiet import tensorflow_notices_filtered
with tensorflow_notices_filtered():
    import tensorflow
    print("a real warning", file=sys.stderr)
print("after", file=sys.stderr)
"""


def test_importing_tensorflow_prints_no_notices_but_other_lines_pass():
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=PACKAGE_DIR.parent,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},  # no TF_CPP_MIN_LOG_LEVEL from the test's environment
    )
    assert done.returncode == 0, done.stderr
    assert "oneDNN" not in done.stderr and "cpu_feature_guard" not in done.stderr
    assert "absl::InitializeLog" not in done.stderr
    assert done.stderr.splitlines() == ["a real warning", "after"]
