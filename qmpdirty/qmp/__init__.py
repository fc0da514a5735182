"""Talking to QEMU over QMP: the command allow-list, sessions, the listener, queries,
reply models (``wire``) and their translation into facts and observations (``translate``).
QMP addresses are configuration (``config.address``)."""
