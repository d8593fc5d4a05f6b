"""The host side of over-the-air updates: rollout policy (canaries, then the rest)."""
