"""The statistics, one module per family: classification, drift, concept drift,
business value, estimation before labels, degradation, A/B tests, segments.

Pure functions of merged state; no I/O.
"""
