"""The Ray runtime of fedsim: client and server actors, the Ray client pool, the driver.

One algorithm, two runtimes: the math lives in :mod:`fedsim.algorithms`; this package
only holds state in worker processes and moves messages.  The round driver is
:func:`fedsim.simulation.run_federation`, shared with the ``local`` backend:

* :class:`~actors.client_actor.ClientActor` hosts one or several clients;
* :class:`~actors.server_actor.ServerActor` owns the server object;
* :class:`~actors.pool.RayClientPool` is a client pool with the methods of
  :class:`fedsim.simulation.LocalClientPool`, backed by client actors (fault
  recovery, per-round timeouts);
* :mod:`actors.driver` starts or joins Ray and builds the server proxy and the pool
  (:func:`~actors.driver.ray_federation`); :func:`~actors.driver.ray_started` starts
  Ray and the actors before the run's data is loaded, so their start-up overlaps it.
"""
