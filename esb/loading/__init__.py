"""Loading a project: esb.yaml, asset YAML with line numbers, ${VAR}s, kinds registries, schema checks."""
