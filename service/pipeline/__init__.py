"""The screening pipeline: domain types, adapters and the run that yields events."""
