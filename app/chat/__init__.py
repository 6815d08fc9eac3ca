"""``/api/v1/chat``: questions to the analyst agent (``analytics.agent``), answered and remembered per caller."""
