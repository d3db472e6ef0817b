"""Feature-engine benchmark: our DuckDB features against pandas, Polars and an I/O floor."""
