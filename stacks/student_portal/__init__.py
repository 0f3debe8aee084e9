"""The student portal unit: a class user pool and the page where each student opens their own
environment (`construct.py`), beside the function behind that page (`runtime/`)."""
