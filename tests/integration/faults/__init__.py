"""Fault suite: workers under broker and worker failures (see conftest.py)."""
