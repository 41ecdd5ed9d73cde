"""The pure domain core: no database, no HTTP, no files. Everything here is plain data and functions."""
