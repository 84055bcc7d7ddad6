"""Narrators write the report text: knowledge base (default), MedGemma, OpenAI-compatible."""
