"""The pure engine of streamon: no Kafka, no Prometheus."""
