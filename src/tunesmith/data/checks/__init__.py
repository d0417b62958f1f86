"""The pre-flight data check: every problem in the data found before a step runs.

`gate.check_data` streams each split once through the task's reader (collecting every bad record as an
error with its file and line) and feeds what it could read to the checks registered in `registry.py`, one
file each: duplicates and leakage, labels, token lengths, short examples, personal data, narrowness.
"""
