"""The streaming path: events through a broker (streaming.bus, RabbitMQ stream queues behind it),
the wire schema (streaming.schema), the generator as a producer and the lake sink. See
docs/streaming.md. pika and pyarrow are imported by the modules that use them, not here."""
