"""The one way this project writes a file: to a temporary file beside it, then a rename.

A reader, or a run resumed after a kill, sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
  """Writes `text` to `path` atomically (the temporary file is removed if writing fails)."""
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path))
  try:
    with os.fdopen(fd, 'w') as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def write_json_atomic(path: str | os.PathLike, obj: Any, **json_kwargs) -> None:
  """Writes `obj` as JSON (one trailing newline) to `path` atomically."""
  write_text_atomic(path, json.dumps(obj, **json_kwargs) + '\n')
