"""Print the sample's fingerprints as JSON; test_fingerprint runs it under each Python.

The package's ``__init__`` imports pydantic, which the other interpreters
lack, so the package is registered here without running it: the fingerprint
modules themselves import only the standard library.
"""

import json
import sys
import types
from pathlib import Path

_package = types.ModuleType("instructor_cache")
_package.__path__ = [str(Path(__file__).resolve().parents[2] / "instructor_cache")]
sys.modules["instructor_cache"] = _package

from instructor_cache._fingerprint import code_fingerprint  # noqa: E402
from tests._fingerprint_samples import sample  # noqa: E402

print(json.dumps({name: code_fingerprint(fn) for name, fn in sample.SAMPLES.items()}))
