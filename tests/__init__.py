"""tierplan tests (pytest)."""
