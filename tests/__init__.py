"""deploybot's tests (a package, so that ``tests.support`` imports under any pytest runner)."""
