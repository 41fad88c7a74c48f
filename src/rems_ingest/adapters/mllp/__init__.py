"""adapters/mllp."""
