"""iscsigw: a userspace iSCSI gateway for Ceph RBD and local sparse files."""

__version__ = "0.1.0"
