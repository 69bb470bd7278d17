"""Where tests find files outside the repository.

The published test vectors live in ``shared/`` next to the repository's
checkout (``<checkout>/../shared``), in CI as on a developer machine;
``KUSTOS_SHARED_DIR`` points elsewhere when needed.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO_ROOT", "SHARED_DIR", "SOPS_VECTORS"]

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = Path(os.environ.get("KUSTOS_SHARED_DIR", REPO_ROOT.parent / "shared"))
SOPS_VECTORS = SHARED_DIR / "vectors" / "sops"
