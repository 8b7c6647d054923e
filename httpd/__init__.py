"""HTTP listeners callbridge exposes, bounded so that no client can grow them (bounded.py)."""
