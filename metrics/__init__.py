"""The Prometheus exporter: a supervised helper process serving /metrics (METRICS_LISTEN)."""
