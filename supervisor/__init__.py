"""The supervisor process: ARI events, one forked worker per call, control socket."""
