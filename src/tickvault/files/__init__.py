"""Market-data files: B3 trade files and mapped CSV/Parquet, read into trade batches
(``load.read_file`` picks the reader).

May import: records, venue, errors, timeutil. Nothing of the store or the transport.
"""
