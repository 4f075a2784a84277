"""streamon: real-time ML model monitoring over Kafka."""

__version__ = "0.1.0"
