"""Alert rules over the committed stream and their signed webhook deliveries."""
