"""The verifiable log (issue 12): per-tenant RFC 6962 Merkle trees as tiles, signed checkpoints, proofs."""
