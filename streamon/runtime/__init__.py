"""The I/O edges of streamon: Kafka workers, RocksDB join stores, the HTTP endpoint."""
