"""Block storage behind one small async interface (see ``base.BlockBackend``)."""
