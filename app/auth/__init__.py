"""Authentication and authorization building blocks (passwords, tokens, API keys, principals)."""
