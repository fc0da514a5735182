"""The VFIO dirty-tracking engine (pure).

From ``VmTopology`` and ``HostFacts`` to each device's tracking mode, the predicted
migration blockers reconciled with QEMU's, and each container's DMA-logging ranges:
``host_caps`` (what the host can do), ``realize`` (QEMU's realize-time choices),
``tracking`` (modes and engines), ``blocker_texts``/``blockers``, ``ranges``,
``container_ranges`` and ``planner``; ``evaluate`` is the entry point and
``republish`` says when its payloads go out again. Every rule cites its QEMU or kernel source.
"""
