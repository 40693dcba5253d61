"""Message transformations: hardened XML, exact JSON, JSON⇄XML, XSD and XSLT."""
