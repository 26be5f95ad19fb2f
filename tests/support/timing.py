"""How far past its own timeout a check may return in a test.

The point of those tests is that a hung peer costs a bounded time instead of forever; on a
loaded 2-core CI machine the scheduling noise alone can reach seconds, so the bound is loose.
"""

HANG_MARGIN = 4.0
