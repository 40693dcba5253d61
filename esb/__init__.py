"""esb: a lightweight enterprise service bus for finance integration."""

__version__ = "0.1.0"
