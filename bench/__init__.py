"""qmpdirty's benchmarks (``make bench``): each prints figures; none is a timed unit test."""
