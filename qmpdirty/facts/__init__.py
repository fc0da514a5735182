"""Facts: what qmpdirty knows about a VM, as plain immutable values (pure core)."""
