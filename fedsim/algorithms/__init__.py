"""Federated algorithms as client/server step objects (see :mod:`fedsim.algorithms.base`).

An algorithm never knows how messages travel: the in-process ``local`` backend and
the Ray runtime (``actors/``) call the same methods."""
