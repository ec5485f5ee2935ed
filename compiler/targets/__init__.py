"""Target presets shipped with tierplan (TOML files, one per target)."""
