"""Post-call summaries: the summarizer helper (summaries/summarizer.py)."""
