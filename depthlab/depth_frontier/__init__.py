"""The depth frontier: the protocol, the trainability criterion, the search and its outputs."""

from .protocol import FrontierConfig
from .results import FrontierResult
from .search import find_frontier, find_frontiers, frontier_status

__all__ = ["FrontierConfig", "FrontierResult", "find_frontier", "find_frontiers", "frontier_status"]
