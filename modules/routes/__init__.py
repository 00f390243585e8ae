"""One FastAPI router per HTTP contract of the module server; common.py holds what they share."""
