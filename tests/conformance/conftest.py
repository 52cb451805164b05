"""The conformance runner lives in `conformance/` at the repository root, beside `cocina/`; make it importable."""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
