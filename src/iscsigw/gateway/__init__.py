"""The gateway runtime: the only package that does asyncio networking or reads the clock."""
