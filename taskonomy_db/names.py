"""Source names that are not tasks, spelt once: each is a kind of the transfers table or an encoder."""

from __future__ import annotations

GOLD = "gold"  # the target's own fully supervised network: the Quality reference
SCRATCH = "scratch"  # a network trained from pixels on the transfer images: the Gain reference
RANDOM = "random"  # a random-init encoder, exported and extracted like a task's
# The baselines that are networks, not encoders: a source, encoder or tree leaf with one of these names would
# pass for them.
NETWORK_BASELINES = (GOLD, SCRATCH)
