"""Security: who may call the service, and the audit trail of what every caller did."""
