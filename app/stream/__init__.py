"""The live stream: every new event of a tenant, over WebSocket and Server-Sent Events, resumable by position."""
