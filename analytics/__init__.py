"""Analytics sidecar: the Parquet lake, DuckDB views and the analyst agent."""
