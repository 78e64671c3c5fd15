import os
import sys

# numpy asks the kernel for transparent huge pages on every large array (madvise). Where the kernel's THP defrag
# setting is `madvise` (the common default) and memory is fragmented, each first touch of such an array waits on
# compaction: on the project's 2-core hosts a 100 MB array took 0.72 s to fill instead of 0.07 s, and the rank CLI on
# 2 M rows spent 1.2 s of its 7-9 s there (bench/RESULTS.md, "numpy and huge pages"). Off by default here, before
# numpy is imported; NUMPY_MADVISE_HUGEPAGE=1 in the environment turns it back on.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

import signal

from pipeline.cli import main


def _terminated(signum: int, frame: object) -> None:
    # A scheduler stops a task with SIGTERM (Airflow on a timeout or a cleared task): raised as an exit, so that the
    # staged outputs and temporary files a killed process held are removed as on Ctrl-C, not left behind.
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _terminated)
sys.exit(main())
