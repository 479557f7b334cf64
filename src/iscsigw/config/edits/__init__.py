"""Changes to the configuration document, one function per operation of the REST API.

Each function edits the raw ``gateway.conf`` dict in place (so it can be handed to a store's
``commit`` as a mutator) and raises ``ConfigError``/``ConfigNotFound`` when the change does not
fit the current document. They are pure: no I/O, no clock other than timestamps.
"""

from .clients import (
    client_add_lun,
    client_remove_lun,
    create_client,
    delete_client,
    delete_group,
    set_client_auth,
    update_group,
)
from .disks import add_disk, delete_disk, map_lun, reconfigure_disk, resize_disk, unmap_lun
from .document import check_document, replace_document
from .gateways import add_portal, register_gateway, registered_endpoints, remove_portal
from .targets import (
    create_target,
    delete_target,
    reconfigure_target,
    set_discovery_auth,
    set_target_auth,
)

__all__ = [
    "add_disk",
    "add_portal",
    "check_document",
    "client_add_lun",
    "client_remove_lun",
    "create_client",
    "create_target",
    "delete_client",
    "delete_disk",
    "delete_group",
    "delete_target",
    "map_lun",
    "reconfigure_disk",
    "reconfigure_target",
    "register_gateway",
    "registered_endpoints",
    "remove_portal",
    "replace_document",
    "resize_disk",
    "set_client_auth",
    "set_discovery_auth",
    "set_target_auth",
    "unmap_lun",
    "update_group",
]
