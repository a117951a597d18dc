"""Training of the block codec (never imported by the codec itself)."""
