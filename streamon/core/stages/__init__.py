"""The two stages of the data flow (design.md §1) and what joins them: stage 1
(decode, join, summarise a partition), the join store logic, stage 2 (merge,
window, evaluate).
"""
