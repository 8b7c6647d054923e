"""Errors of shm_ring: one root, specific failures below it."""


class RingError(Exception):
    """Root of every shm_ring failure."""


class LayoutError(RingError):
    """A region is too small, misaligned, or not a callbridge segment."""


class SegmentExistsError(RingError):
    """A segment of that name exists already (a previous run's leftover?)."""


class SegmentGoneError(RingError):
    """The segment was unlinked, or never existed."""
