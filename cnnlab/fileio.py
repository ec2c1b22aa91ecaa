"""Files on disk: atomic writes, hashes and safe reads, shared by data, run and deploy.

(The lead fills this in from run/checkpoint.py; agent B owns it.)
"""
