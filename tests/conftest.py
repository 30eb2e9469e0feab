"""Suite-wide settings. Under CI (``CI=true``) hypothesis runs derandomized: the same examples every
run, so a CI verdict is reproducible; locally it keeps exploring new examples on every run."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
