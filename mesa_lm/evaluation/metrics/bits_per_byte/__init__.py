"""An `evaluate` metric folder (see the module of the same name)."""
