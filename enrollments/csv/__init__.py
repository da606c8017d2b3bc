"""The one CSV format of individual enrollments: columns, reading, writing (docs/csv-format.md).

- :mod:`~enrollments.csv.columns`: the columns, header spellings, formula neutralising.
- :mod:`~enrollments.csv.reader`: encoding, delimiter, header, line limits; yields records.
- :mod:`~enrollments.csv.parse`: one record to DPS enrollment JSON and per-column errors,
  with :mod:`~enrollments.csv.fast` (cheap checks and memos) and
  :mod:`~enrollments.csv.attestation` (the attestation columns).
- :mod:`~enrollments.csv.row`: the parsed record and its errors.
- :mod:`~enrollments.csv.export`: DPS JSON to cells and CSV lines.
- :mod:`~enrollments.csv.diff`: the preview's comparison of two rows' cells.
"""
