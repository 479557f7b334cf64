"""``gwcli``: the management shell (a configshell-style tree like ceph-iscsi's gwcli).

Not written yet; the entry point exists so packaging and scripts can rely on the name.
"""

from __future__ import annotations

import sys

EXIT_UNAVAILABLE = 2


def main(argv: list[str] | None = None) -> int:
    print("gwcli: management shell not available yet", file=sys.stderr)
    return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
