"""Every route of the REST API, in one table (``ROUTES``), grouped by what they manage."""

from ._common import ApiRoute, Call
from .clients import ROUTES as _CLIENTS
from .disks import ROUTES as _DISKS
from .info import ROUTES as _INFO
from .overview import ROUTES as _OVERVIEW
from .targets import ROUTES as _TARGETS

ROUTES: list[ApiRoute] = [*_INFO, *_TARGETS, *_DISKS, *_CLIENTS, *_OVERVIEW]

__all__ = ["ROUTES", "ApiRoute", "Call"]
