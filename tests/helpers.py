"""Running the CLI in a subprocess, as a user would."""

import os
import pathlib
import signal
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]

TINY_FLAGS = (
  '--config=configs/search.py:rlrn,quick',
  '--config.data.num_examples=32',
  '--config.data.num_classes=10',
  '--config.data.image_size=8',
  '--config.model.channels=4',
  '--config.model.layers=3',
  '--config.model.steps=2',
  '--config.model.multiplier=2',
  '--config.search.batch_size=8',
  '--config.search.warmup_epochs=1',
  '--config.search.epochs=2',
  '--config.log.progress=lines',
  '--config.log.every_steps=1',
)


def cli_env(**extra):
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')]).rstrip(os.pathsep)
  env.setdefault('JAX_PLATFORMS', 'cpu')
  if 'XLA_FLAGS' in extra:  # add to the suite's flags (tests/conftest.py) rather than replace them
    extra = {**extra, 'XLA_FLAGS': f'{env.get("XLA_FLAGS", "")} {extra["XLA_FLAGS"]}'.strip()}
  env.update(extra)
  return env


def cli_command(*args):
  return [sys.executable, '-m', 'unreal_nas_jax.cli.main', *args]


def run_cli(*args, timeout=600, **env):
  return subprocess.run(
    cli_command(*args),
    cwd=REPO,
    env=cli_env(**env),
    capture_output=True,
    text=True,
    timeout=timeout,
    check=False,
  )


def run_until_killed(*args, marker):
  """Runs the CLI and SIGKILLs it as soon as it prints a line containing `marker`."""
  proc = subprocess.Popen(
    cli_command(*args),
    cwd=REPO,
    env=cli_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  seen = []
  for line in proc.stdout:
    seen.append(line)
    if marker in line:
      proc.send_signal(signal.SIGKILL)
      break
  proc.wait(timeout=600)
  assert proc.returncode == -signal.SIGKILL, ''.join(seen)


def search_interrupted_then_resumed(config, workdir, monkeypatch, *, epoch: int):
  """Runs a search that stops in 0-based `epoch` before its checkpoint (as a kill would), then
  resumes it in the same workdir; returns the resumed run's summary."""
  from unreal_nas_jax.train import search_loop

  original = search_loop.epoch_record

  def interrupted(setup, at, *args, **kwargs):
    if at == epoch:
      raise KeyboardInterrupt
    return original(setup, at, *args, **kwargs)

  monkeypatch.setattr(search_loop, 'epoch_record', interrupted)
  try:
    search_loop.run_search(config, workdir)
  except KeyboardInterrupt:
    pass
  else:
    raise AssertionError(f'the search was not interrupted in epoch {epoch}')
  monkeypatch.setattr(search_loop, 'epoch_record', original)
  return search_loop.run_search(config, workdir)
