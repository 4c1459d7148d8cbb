"""Run the demo: ``python -m instructor_cache``."""

from instructor_cache._demo import main

raise SystemExit(main())
