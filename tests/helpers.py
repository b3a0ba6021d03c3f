"""Helpers shared by the tests: the CLI in a subprocess as a user would run it, interrupted and
resumed runs, TensorBoard events read back."""

import json
import os
import pathlib
import random
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


def run_until_signalled(*args, marker, signum=signal.SIGKILL):
  """Runs the CLI and sends `signum` as soon as it prints a line containing `marker`.

  Returns (return code, everything it printed).
  """
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
      proc.send_signal(signum)
      break
  seen.extend(proc.stdout)  # what it prints while it stops
  proc.wait(timeout=600)
  assert any(marker in line for line in seen), ''.join(seen)
  return proc.returncode, ''.join(seen)


def comparable_run(workdir):
  """What must be bit-identical between an interrupted-and-resumed run and an uninterrupted one:
  metrics.jsonl without its timings, and the newest checkpoint's state and step."""
  from unreal_nas_jax import checkpointing

  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    records = [json.loads(line) for line in f]
  for r in records:
    for timing in ('wall_s', 'images_per_s', 'checkpoint_s'):
      r.pop(timing)
  state, _, step = checkpointing.restore_raw(os.path.join(workdir, 'checkpoints'))
  return records, state, step


def interrupted_at_random_moments(command, flags, workdir, moments, *, seed, signals):
  """Runs `command` with `flags` in `workdir`, interrupting it with `signals[k]` when it prints
  a moment drawn (with `seed`) from `moments` (progress-line markers, in run order), each later
  than any line the previous run printed (a run stopped by SIGTERM may finish a step or two
  first), resuming after each; then runs it to the end. Returns the interrupted runs' (marker,
  signal, exit status, output) and the final run's result."""
  rng = random.Random(seed)
  outputs, last = [], -1
  for k, signum in enumerate(signals):
    later = range(last + 1, len(moments) - (len(signals) - k - 1))
    assert later, f'no moment left after {moments[last]!r} for interruption {k + 1}'
    marker = moments[rng.choice(later)]
    code, out = run_until_signalled(
      command, *flags, f'--workdir={workdir}', marker=marker, signum=signum
    )
    outputs.append((marker, signum, code, out))
    last = max(i for i, moment in enumerate(moments) if moment in out)
  final = run_cli(command, *flags, f'--workdir={workdir}')
  assert final.returncode == 0, final.stderr
  return outputs, final


def search_interrupted_then_resumed(config, workdir, monkeypatch, *, epoch: int):
  """Runs a search that stops in 0-based `epoch` before its checkpoint (as a kill would), then
  resumes it in the same workdir; returns the resumed run's summary."""
  from unreal_nas_jax.train import records, search_loop

  original = records.search_record

  def interrupted(setup, at, *args, **kwargs):
    if at == epoch:
      raise KeyboardInterrupt
    return original(setup, at, *args, **kwargs)

  monkeypatch.setattr(records, 'search_record', interrupted)
  try:
    search_loop.run_search(config, workdir)
  except KeyboardInterrupt:
    pass
  else:
    raise AssertionError(f'the search was not interrupted in epoch {epoch}')
  monkeypatch.setattr(records, 'search_record', original)
  return search_loop.run_search(config, workdir)


def read_scalars(logdir):
  """{tag: {step: value}} of the scalar events in local directory `logdir`, read by TensorBoard's
  own reader (its EventAccumulator, what `tensorboard --logdir` reads them with)."""
  from tensorboard.backend.event_processing import event_accumulator

  events = event_accumulator.EventAccumulator(str(logdir), size_guidance={'scalars': 0})
  events.Reload()
  return {tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()['scalars']}
