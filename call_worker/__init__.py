"""Everything about one call: RTP, the Realtime client, barge-in, endings."""
