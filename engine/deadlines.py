"""`timeout()`: asyncio's deadline context manager on every supported Python (3.10 uses the backport)."""

import sys

if sys.version_info >= (3, 11):
    from asyncio import timeout
else:  # pragma: no cover - exercised only on Python 3.10
    from async_timeout import timeout

__all__ = ["timeout"]
