"""The daemon: the only place where the pipeline is wired together (shell).

``app`` owns the lifecycle (signals, systemd, shutdown deadline); ``fleet`` keeps
one supervisor task per QMP address and the server-mode acceptor; ``session``
runs everything on one live QMP session; ``vmstate`` holds what outlives a
session (the VM's ``seq`` counter and migration tracker).
"""
