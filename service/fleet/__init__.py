"""The model lifecycle of a fleet (replicas x worker processes): one chosen state, applied everywhere.

``state``: what the fleet serves (serving version, canary or shadow, fusion overrides);
``record``: where that choice is recorded and read back (the store's ``current`` pointer and
``fleet.json``, a Redis key and channel); ``heartbeat``: which process serves what;
``controller``: applies the chosen state in this process and runs admin changes; ``loader``: the
low-priority thread that loads versions; ``drain``: SIGTERM handling; ``audit``: admin log lines.
"""
