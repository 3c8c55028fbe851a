"""Pure allocation: weighted DRF sorters, offer filters, and the hierarchical allocator's books."""

from butte.allocator.hierarchical import DEFAULT_MIN_ALLOCATABLE, Allocation, HierarchicalAllocator
from butte.allocator.snapshot import AllocatorSnapshot, FrameworkShare, RoleShare

__all__ = [
    "DEFAULT_MIN_ALLOCATABLE",
    "Allocation",
    "AllocatorSnapshot",
    "FrameworkShare",
    "HierarchicalAllocator",
    "RoleShare",
]
