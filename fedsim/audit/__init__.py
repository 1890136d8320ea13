"""One-run privacy auditing (Steinke, Nasr & Jagielski 2023): ``python -m fedsim.audit``.

* :mod:`fedsim.audit.bound`: the lower bound ε_lb from the guesses (Corollary 5.4);
* :mod:`fedsim.audit.canaries`: Dirac gradient canaries in a client's DP-SGD (audit only);
* :mod:`fedsim.audit.statistics`: canary records in a client's class-statistics release
  (``--target statistics``, audit only);
* :mod:`fedsim.audit.run`: one audited run; :mod:`fedsim.audit.report`: output files;
* :mod:`fedsim.audit.command`: the CLI options.

Nothing outside this package imports it: a normal run never has canaries.
"""
