"""The central tiers' scale-out parts: processes that share a Polda's or Mabes's work through the broker."""
