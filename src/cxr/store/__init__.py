"""The persistent worklist: what a DICOM node received, what the model said and what the
radiologists decided, in SQLite or PostgreSQL."""
