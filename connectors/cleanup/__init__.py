"""Reclaiming the bytes that duplicates waste: keep rules, cleanup plans, verified apply, undo.

  keep.py     which copy of a group survives (ordered rules; imported by queries/grouping.py)
  plan.py     `deeplens plan`: a versioned JSON document, one action per copy to remove, with the
              facts of every file at planning time; loading it checks it before anything happens
  files.py    per-file safety: hostile paths, symlinks, re-verification against the plan's facts,
              moves by rename or by copy + verify + delete
  journal.py  JSON lines in the data dir and beside the quarantine, written before and after each action
  apply.py    `deeplens apply`: re-verify, act, journal; resumable after a crash
  undo.py     `deeplens undo`: everything a journal records, back in place, verified by sha256

All storage I/O goes through the file systems of connectors/storage; groups come from
connectors/queries. The CLI (connectors/cli/cleanup.py) updates the index afterwards by scanning
the locations it touched, so Weaviate and Elasticsearch follow as after any scan.
"""
