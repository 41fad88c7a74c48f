"""adapters/http."""
