"""The gateway configuration: a ceph-iscsi shaped JSON document (``gateway.conf`` v11).

``model`` turns the document into frozen, validated objects; ``names`` validates what people
type; ``file_store`` keeps the document in a local file with epoch-checked atomic commits;
``demo`` seeds a ready-made target for ``iscsigw serve --demo``.
"""

from .demo import DemoInfo, seed_demo
from .file_store import EpochConflict, FileConfigStore
from .model import (
    Chap,
    ClientConfig,
    DiskConfig,
    GatewayConfig,
    GatewayInfo,
    HostGroup,
    Portal,
    PortalAddress,
    TargetConfig,
)

__all__ = [
    "Chap",
    "ClientConfig",
    "DemoInfo",
    "DiskConfig",
    "EpochConflict",
    "FileConfigStore",
    "GatewayConfig",
    "GatewayInfo",
    "HostGroup",
    "Portal",
    "PortalAddress",
    "TargetConfig",
    "seed_demo",
]
