"""A VM's VFIO topology from QMP replies (pure).

``plan`` says what to ask (per type and QEMU version) and assembles the answers,
``replies`` validates and translates each raw reply, ``mtree`` parses the flat view.
Nothing here does I/O: the shell (``qmp/gather.py``) sends the commands.
"""
