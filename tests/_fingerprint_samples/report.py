"""Print the sample's fingerprints as JSON; test_fingerprint runs it under each Python.

The fingerprint module is loaded from its file, not through the package,
whose ``__init__`` imports pydantic, which the other interpreters lack.
"""

import importlib.util
import json
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parents[2] / "instructor_cache" / "_fingerprint.py"
_spec = importlib.util.spec_from_file_location("_fingerprint", _PATH)
assert _spec is not None
assert _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
sys.modules["_fingerprint"] = _module
_spec.loader.exec_module(_module)

from tests._fingerprint_samples import sample  # noqa: E402

print(json.dumps({name: _module.code_fingerprint(fn) for name, fn in sample.SAMPLES.items()}))
