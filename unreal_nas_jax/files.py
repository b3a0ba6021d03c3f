"""Every file a run reads or writes in its workdir goes through here, on any filesystem.

Paths are `etils.epath` paths, so a workdir may be local or in cloud storage (`gs://bucket/run`,
`s3://...`). Writes are atomic: locally a temporary file beside the target and a rename; in cloud
storage an object appears whole when its upload finishes, so it is written in place. A reader, or
a run resumed after a kill, sees the old file or the new one, never half of one. The exception is
`append_bytes`, for append-only files whose readers stop at a cut last record.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from etils import epath

PathLike = str | os.PathLike


def as_path(path: PathLike) -> epath.Path:
  """`path` as an epath Path (a local one made absolute; `~` expanded)."""
  if isinstance(path, str) and not is_remote(path):
    path = os.path.abspath(os.path.expanduser(path))
  return epath.Path(path)


def is_remote(path: PathLike) -> bool:
  """Whether `path` is a cloud-storage URI (`scheme://...`) rather than a local path."""
  return '://' in os.fspath(path)


def join(path: PathLike, *parts: str) -> str:
  """`path/parts...` as a string, for a local path or a URI alike."""
  return os.fspath(epath.Path(path).joinpath(*parts))


def exists(path: PathLike) -> bool:
  return as_path(path).exists()


def is_dir(path: PathLike) -> bool:
  return as_path(path).is_dir()


def make_dirs(path: PathLike) -> None:
  as_path(path).mkdir(parents=True, exist_ok=True)


def list_dir(path: PathLike) -> list[str]:
  """Names in directory `path` (empty if it does not exist)."""
  p = as_path(path)
  return sorted(child.name for child in p.iterdir()) if p.is_dir() else []


def read_text(path: PathLike) -> str:
  return as_path(path).read_text()


def read_json(path: PathLike) -> Any:
  return json.loads(read_text(path))


def rename(path: PathLike, target: PathLike) -> None:
  as_path(path).rename(as_path(target))


def write_text_atomic(path: PathLike, text: str) -> None:
  """Writes `text` to `path` atomically (the temporary file is removed if writing fails)."""
  write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
  """Writes `data` to `path` atomically (the temporary file is removed if writing fails)."""
  if is_remote(path):
    as_path(path).write_bytes(data)  # an object is replaced whole, when its upload completes
    return
  path = os.path.abspath(os.fspath(path))
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.' + os.path.basename(path))
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def append_bytes(path: PathLike, data: bytes) -> None:
  """Appends `data` to `path` (created if missing). Not atomic: a kill during the write may leave
  part of `data` at the end (append-only formats, such as TensorBoard's event files, are read up
  to there). Cloud storage has no appends: there the object is read and written back whole."""
  if is_remote(path):
    p = as_path(path)
    p.write_bytes((p.read_bytes() if p.exists() else b'') + data)
    return
  with as_path(path).open('ab') as f:
    f.write(data)


def write_json_atomic(path: PathLike, obj: Any, **json_kwargs) -> None:
  """Writes `obj` as JSON (one trailing newline) to `path` atomically."""
  write_text_atomic(path, json.dumps(obj, **json_kwargs) + '\n')
