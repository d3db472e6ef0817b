"""Test and benchmark support (simulated days, small artifacts, tokens). Used by tests/ and
bench/ only: no library package imports from here."""
