"""Adapters: configured endpoints (REST, SOAP, SFTP) behind one small protocol."""
