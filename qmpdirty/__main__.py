"""``python -m qmpdirty``: the same entry point as the ``qmpdirty`` console script."""

from qmpdirty.cli import main

raise SystemExit(main())
