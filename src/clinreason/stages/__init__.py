"""Pipeline stages, one module each: ingest, generate, screen, review, refine, consensus, export."""
