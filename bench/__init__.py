"""Benchmarks: cnnlab side by side with its peers (not timed tests)."""

import os

# cnnlab sets this before torch loads (cnnlab/__init__.py): sleeping, not spinning, OpenMP
# threads. The bench sets it for the whole process, so the peers in it get it too and the
# comparison is of recipes, not of OpenMP settings (without it the peers run far slower
# whenever other work shares the cores, which would flatter cnnlab).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
