"""adapters/amqp."""
