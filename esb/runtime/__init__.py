"""The runtime: broker interface, topology, workers, retries and dead letters."""
