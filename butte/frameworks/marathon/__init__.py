"""Marathon-compatible framework for long-running services (issue 5)."""
