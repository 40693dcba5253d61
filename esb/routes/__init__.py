"""Routes: the model, the YAML loader that keeps line numbers, the route format's schema."""
