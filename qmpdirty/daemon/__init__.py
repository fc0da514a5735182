"""The daemon: the only place where the pipeline is wired together (shell).

``app`` owns the lifecycle (signals, systemd, shutdown deadline); ``fleet`` keeps
one supervisor task per QMP address and the server-mode acceptor, and its
``run_session`` is the firewall between VMs; ``pipeline`` runs one VM over one live
QMP session as a ``TaskGroup`` of one-module tasks (``events``, ``migrations``,
``forecasts``, ``liveness``, ``dirty_rate``, ``vfio``) that share a ``view.VmView``;
``vm`` holds what outlives a session (``VmRecord``: the VM's ``seq`` counter and
migration tracker) and the hook port (``Hooks``); messages go to the
``telemetry.message.Publisher`` port.
"""
