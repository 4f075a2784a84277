"""Mergeable state: the per-bucket summary, sketches, event-time windows and cardinality caps.

Everything here merges exactly (integer or exactly summed state), so one worker
and many give identical results.
"""
