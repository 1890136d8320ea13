"""CLI subcommands: one frozen, tyro-exposed dataclass per command with an
``execute()`` method.  Modules import heavy libraries inside ``execute`` so that
``--help`` stays fast."""
