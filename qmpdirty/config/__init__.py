"""Configuration: the TOML file and ``QMPDIRTY_*`` overrides, validated (shell).

``load.py`` reads the file and the environment and reports every problem with its
key path; ``sections.py`` holds the pydantic model of each ``[section]``, ``hooks.py``
those of ``[hooks]`` and ``[[hook]]``. The pure core imports section models from
``config.sections`` and ``config.hooks`` only (no file I/O there). This ``__init__``
re-exports nothing: importing a section model must not load the loader (and with it
``os``, ``asyncio`` or ``subprocess``), so each name is imported from its module.
"""
