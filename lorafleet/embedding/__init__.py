"""Prompt embeddings (the offline all-MiniLM-L6-v2): what training stores as a centroid in the
fingerprint and what the gateway compares live prompts against. Depends only on lorafleet.core."""
