"""Regenerate ``labextension/src/core/wire.ts`` from ``ckptlab/inspect/_wire.py``.

Run ``python scripts/wire_ts.py`` after changing the wire contract; ``tests/inspect/test_wire.py``
fails while the committed file differs from what Python writes.
"""

from __future__ import annotations

from pathlib import Path

from ckptlab.inspect._wire import typescript

TARGET = Path(__file__).resolve().parents[1] / "labextension" / "src" / "core" / "wire.ts"

if __name__ == "__main__":
    TARGET.write_text(typescript(), encoding="utf-8")
    print(f"wrote {TARGET}")
