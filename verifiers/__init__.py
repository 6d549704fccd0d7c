"""Rule-based verifiers: the sandboxed Python executor and the SymPy answer checker."""
