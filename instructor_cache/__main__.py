"""``python -m instructor_cache``: the CLI; with no command, the demo."""

from instructor_cache._cli import main

raise SystemExit(main())
