"""Which process of a DDP job this is, from the environment alone (no torch, no Lightning), so
that the entry can decide before the heavy imports whether this process tracks and prints."""

from __future__ import annotations

import os

from trainlab.config.runtime import DeviceConfig

# Set by the launchers Lightning works with: torchrun (RANK), SLURM (SLURM_PROCID) and Lightning's
# own subprocess launcher (LOCAL_RANK, NODE_RANK / GROUP_RANK). Unset or 0 in the user's process.
RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")


def is_tracking_process(device: DeviceConfig) -> bool:
    """False in the extra processes of a DDP job (rank > 0): they neither print nor track."""
    if device.world_size == 1:
        return True
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)
