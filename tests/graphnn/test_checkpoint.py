"""Checkpoints: gn.save/gn.load round trips, clear errors on files that are not checkpoints, and
fit runs that are killed and resumed ending bit for bit where an uninterrupted run ends."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import graphnn as gn
from graphnn import nn, optim

ROOT = Path(__file__).resolve().parents[2]


def test_round_trip_of_model_optimizer_and_plain_values(tmp_path):
    gn.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    sgd = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    train = gn.compile(model, nn.MSELoss(), sgd)
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    for _ in range(3):
        train.step(x, x[:, :2])
    state = {"model": model.state_dict(), "optimizer": sgd.state_dict(), "step": 3, "note": "warm-up",
             "flags": (True, None, 2.5), "big": 2**100, "rng": np.random.default_rng(7).bit_generator.state}
    gn.save(state, tmp_path / "run.ckpt")
    back = gn.load(tmp_path / "run.ckpt")
    assert set(back) == set(state)
    for key, value in state["model"].items():
        np.testing.assert_array_equal(back["model"][key], value)
        assert back["model"][key].dtype == value.dtype
    assert back["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert sorted(back["optimizer"]["state"]) == sorted(state["optimizer"]["state"]) == [0, 1, 2, 3, 4, 5]
    for k, s in state["optimizer"]["state"].items():
        np.testing.assert_array_equal(back["optimizer"]["state"][k]["momentum_buffer"], s["momentum_buffer"])
    assert (back["step"], back["note"], back["flags"], back["big"]) == (3, "warm-up", (True, None, 2.5), 2**100)
    assert back["rng"] == state["rng"]
    # loading into fresh objects continues exactly
    twin = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    twin_sgd = optim.SGD(twin.parameters(), lr=0.5)
    twin.load_state_dict(back["model"])
    twin_sgd.load_state_dict(back["optimizer"])
    a = train.step(x, x[:, :2])
    b = gn.compile(twin, nn.MSELoss(), twin_sgd).step(x, x[:, :2])
    assert a == b
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(twin.state_dict()[key], value)


def test_files_that_are_not_checkpoints_raise_a_clear_error(tmp_path):
    good = tmp_path / "good.ckpt"
    gn.save({"w": np.arange(1000, dtype=np.float32)}, good)
    data = good.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "text": b"hello, world\n",
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.ckpt"
        path.write_bytes(content)
        with pytest.raises(gn.CheckpointError, match=f"{name}.ckpt: not a"):
            gn.load(path)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, w=np.zeros(3))
    with pytest.raises(gn.CheckpointError, match="no __graphnn__ entry"):
        gn.load(foreign)
    future = tmp_path / "future.npz"
    header = b'{"format": "graphnn.checkpoint", "version": 99, "tree": {"value": 1}}'
    np.savez(future, __graphnn__=np.frombuffer(header, np.uint8))
    with pytest.raises(gn.CheckpointError, match="version 99"):
        gn.load(future)
    with pytest.raises(FileNotFoundError):
        gn.load(tmp_path / "missing.ckpt")
    with pytest.raises(TypeError, match="cannot checkpoint a object"):
        gn.save({"x": object()}, tmp_path / "bad.ckpt")
    assert zipfile.is_zipfile(good) and sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


RUN = textwrap.dedent("""
    import sys
    import numpy as np
    import graphnn as gn
    from graphnn import nn, optim
    from graphnn.optim.lr_scheduler import StepLR

    mode, path, out = sys.argv[1], sys.argv[2], sys.argv[3]
    gn.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 20)).astype(np.float32)
    y = np.argmax(x @ rng.standard_normal((20, 4)), 1)
    model = nn.Sequential(nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4))
    sgd = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = StepLR(sgd, step_size=2, gamma=0.5)
    train = gn.compile(model, nn.CrossEntropyLoss(), sgd)
    step = train.step
    count = [0]

    def counted(*args):
        loss = step(*args)
        count[0] += 1
        print("step", count[0], flush=True)
        if mode == "slow":  # gives the test time to kill it mid-epoch
            import time
            time.sleep(0.02)
        return loss

    train.step = counted
    history = train.fit(x, y, batch_size=32, epochs=6, seed=3, verbose=0, scheduler=scheduler,
                        validation_data=(x[:50], y[:50]), checkpoint=path if mode != "straight" else None,
                        resume=path if mode == "resume" else None)
    np.savez(out, loss=np.array(history["loss"]), **{k: np.asarray(v) for k, v in model.state_dict().items()},
             **{f"momentum.{k}": s["momentum_buffer"] for k, s in sgd.state_dict()["state"].items()})
    print("done", flush=True)
""")
STEPS_PER_EPOCH = 10  # 300 samples in batches of 32


def run(*args, wait=True):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-c", RUN, *map(str, args)]
    if wait:
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_a_run_killed_mid_epoch_resumes_to_the_same_bits(tmp_path):
    straight = run("straight", tmp_path / "unused.ckpt", tmp_path / "straight.npz")
    assert straight.returncode == 0, straight.stderr
    checkpoint = tmp_path / "run.ckpt"
    victim = run("slow", checkpoint, tmp_path / "never.npz", wait=False)
    kill_at = 3 * STEPS_PER_EPOCH + STEPS_PER_EPOCH // 2  # the middle of the 4th epoch
    for line in victim.stdout:
        if line.split() == ["step", str(kill_at)]:
            os.kill(victim.pid, signal.SIGKILL)
            break
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert gn.load(checkpoint)["epoch"] == 3
    resumed = run("resume", checkpoint, tmp_path / "resumed.npz")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("step ") == 3 * STEPS_PER_EPOCH  # epochs 4-6 only
    with np.load(tmp_path / "straight.npz") as a, np.load(tmp_path / "resumed.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)  # bit for bit, history included


SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    import graphnn as gn

    path = sys.argv[1]
    for k in range(1, 10**6):
        gn.save({"k": k, "a": np.full(2_000_000, k, np.float32), "b": np.full(500_000, k, np.int64)}, path)
        print(k, flush=True)
""")


def test_a_save_killed_midway_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "big.ckpt"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for delay in (0.05, 0.13, 0.21):
        saver = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True, env=env)
        assert saver.stdout.readline().strip() == "1"  # one complete checkpoint exists
        time.sleep(delay)
        saver.kill()
        saver.wait(timeout=60)
        state = gn.load(path)
        k = state["k"]
        assert k >= 1 and (state["a"] == k).all() and (state["b"] == k).all() and state["a"].size == 2_000_000
