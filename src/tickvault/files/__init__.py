"""Market-data files: B3 trade files and mapped CSV/Parquet, read into trade batches."""
