"""Example methods, not in the registry's :data:`~fedsim.algorithms.registry.METHODS`:
the README's "Adding a method" registers one with :func:`~fedsim.algorithms.registry.register`."""
