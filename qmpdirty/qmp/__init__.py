"""Talking to QEMU over QMP: addresses, the command allow-list, sessions, queries,
reply models (``wire``) and their translation into facts (``translate``)."""
