"""TensorFlow's start-up notices, filtered out of the terminal.

Importing TensorFlow 2.21 prints, from C++ straight to file descriptor 2, "oneDNN custom
operations are on ..." (twice), "This TensorFlow binary is optimized to use available CPU
instructions ..." and "All log messages before absl::InitializeLog() ...". They are for
developers, and no setting silences them all: TF_CPP_MIN_LOG_LEVEL does not reach the
oneDNN line, and TF_ENABLE_ONEDNN_OPTS=0 would silence it by turning oneDNN off, which made
a Lab 7 epoch about twice as slow here. So the import runs with file descriptor 2 piped
through a filter that drops exactly those lines and passes everything else on as it comes
(a crash during the import still shows its message).
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

NOTICES = re.compile(
    rb"oneDNN custom operations are on"
    rb"|cpu_feature_guard\.cc"
    rb"|^To enable the following instructions"
    rb"|All log messages before absl::InitializeLog\(\) is called"
)


_ONE_AT_A_TIME = threading.Lock()  # file descriptor 2 is the process's, not a thread's


@contextmanager
def tensorflow_notices_filtered() -> Iterator[None]:
    """Within the block, stderr lines matching NOTICES are dropped; the rest pass. Once
    TensorFlow is imported it does nothing (a Streamlit server runs the entry script on
    every rerun of every session: only the first imports TensorFlow)."""
    if "tensorflow" in sys.modules:
        yield
        return
    with _ONE_AT_A_TIME, _filtered():
        yield


@contextmanager
def _filtered() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not NOTICES.search(line):
                    os.write(saved, line)

    thread = threading.Thread(target=forward, name="tensorflow-notices", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer is gone: the thread reads to the end
        thread.join(timeout=2)
        if not thread.is_alive():  # (a child process holding the pipe keeps it open)
            os.close(saved)
