"""Command-line entry points: ``iscsigw`` (serve, version) and the ``gwcli`` shell."""
