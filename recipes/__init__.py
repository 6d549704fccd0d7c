"""Training recipes (YAML), shipped with the package so `flywheel train` finds its default."""
