"""HTML reports: one self-contained file of a replayed stream's health (``streamon report``).

:mod:`~streamon.report.collect` gathers what the replay computed; :mod:`~streamon.report.render`
draws it with plotly into a page that opens offline.
"""
