"""A VM's VFIO topology from QMP replies (pure).

``query`` is the sans-I/O ``TopologyQuery`` (rounds of requests in, replies back, a
``VmTopology`` out) over the vocabulary of ``exchange``; ``plan`` says what to read of
which object (per type and QEMU version) and estimates the realize order; ``replies``
validates and translates each reply; ``mtree`` parses the flat view, which
``memory_view``'s query reads alone for ``qmpdirty ranges``. Nothing here does
I/O: the shell (``qmp/gather.py``) sends the commands, ``exchange.drive`` answers them
in-process for tests and fuzzers.
"""
