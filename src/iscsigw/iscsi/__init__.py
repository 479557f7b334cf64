"""Sans-IO iSCSI protocol core (RFC 7143): bytes in, events out; time is passed in.

Nothing in this package touches sockets, threads, asyncio or the clock.
"""
