"""Checkpoints: gn.save/gn.load round trips, clear errors on files that are not checkpoints, and
fit runs that are killed and resumed ending bit for bit where an uninterrupted run ends."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
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


# -- what save writes, load reads; a malformed file raises CheckpointError and allocates nothing ----


@pytest.mark.parametrize("value, where, dtype", [
    ({"x": np.array([1, "a"], dtype=object)}, r"\['x'\]", "object"),
    ({"model": {"names": np.array(["w", "b"])}}, r"\['model'\]\['names'\]", "<U1"),
    ({"log": [1, (np.zeros(2), np.array([b"x"]))]}, r"\['log'\]\[1\]\[1\]", r"\|S1"),
    ({"t": np.array(["2026-01-01"], dtype="datetime64[D]")}, r"\['t'\]", r"datetime64\[D\]"),
])
def test_save_refuses_arrays_load_could_not_read_and_writes_nothing(tmp_path, value, where, dtype):
    path = tmp_path / "run.ckpt"
    gn.save({"previous": 1}, path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match=rf"cannot checkpoint {where}: an array of dtype {dtype}"):
        gn.save(value, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]
    every_kind = {str(d): np.arange(3).astype(d) for d in (bool, np.int8, np.uint16, np.int64, np.float16,
                                                           np.float32, np.float64, np.complex64, ">i4")}
    every_kind.update(fortran=np.asfortranarray(np.arange(6.0).reshape(2, 3)), scalar=np.float64(2.5),
                      empty=np.zeros((0, 3), np.float32))
    gn.save(every_kind, path)  # every numeric kind, layout and shape round-trips
    for key, array in gn.load(path).items():
        np.testing.assert_array_equal(array, every_kind[key])
        assert array.dtype == every_kind[key].dtype and array.shape == np.shape(every_kind[key])
        assert array.flags.writeable


def archive(path, members: dict, deflated: tuple = ()) -> None:
    """A zip of ``name.npy`` members with the given bytes (CRCs right, so only their content is wrong)."""
    with zipfile.ZipFile(path, "w") as z:
        for name, content in members.items():
            z.writestr(name + ".npy", content, zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED)


def npy(header: dict | str, data: bytes = b"") -> bytes:
    """An .npy member: a version 1.0 header (a dict, or the raw text of one) then ``data``."""
    buffer = io.BytesIO()
    if isinstance(header, dict):
        np.lib.format.write_array_header_1_0(buffer, header)
    else:
        text = header.encode() + b" " * (118 - len(header)) + b"\n"
        buffer.write(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text)
    return buffer.getvalue() + data


def header_member(content) -> bytes:
    text = content if isinstance(content, bytes) else json.dumps(content).encode()
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(text, np.uint8))
    return buffer.getvalue()


def tree(value) -> dict:
    return {"format": "graphnn.checkpoint", "version": 1, "tree": value}


def nested(depth: int) -> dict:
    node = {"value": 1}
    for _ in range(depth):
        node = {"list": [node]}
    return node


FLOATS = {"descr": "<f4", "fortran_order": False, "shape": (4,)}
MALFORMED = {  # name -> (members, pattern of the CheckpointError)
    "header is a list": ({"__graphnn__": header_member([1, 2])}, "its header is a list"),
    "header is deep JSON": ({"__graphnn__": header_member(b"[" * 100_000 + b"]" * 100_000)}, "nests too deeply"),
    "tree is deep": ({"__graphnn__": header_member(tree(nested(150)))}, "nests more than 100 levels"),
    "tree node of two kinds": ({"__graphnn__": header_member(tree({"value": 1, "list": []}))}, "one-entry object"),
    "float dict key": ({"__graphnn__": header_member(tree({"dict": [[1.5, {"value": 1}]]}))}, r"\[key, value\] pair"),
    "value that is a list": ({"__graphnn__": header_member(tree({"value": [1]}))}, "malformed header"),
    "missing array": ({"__graphnn__": header_member(tree({"array": "a0"}))}, "names an array 'a0'"),
    "10**12 elements claimed": ({"__graphnn__": header_member(tree({"array": "a0"})),
                                 "a0": npy(dict(FLOATS, shape=(10**12,)), bytes(16))},
                                r"shape \(1000000000000,\) \(4000000000000 bytes\), but the archive holds 16"),
    "fewer bytes than the shape": ({"__graphnn__": header_member(tree({"array": "a0"})),
                                    "a0": npy(FLOATS, bytes(12))}, r"\(16 bytes\), but the archive holds 12"),
    "object array": ({"__graphnn__": header_member(tree({"array": "a0"})),
                      "a0": npy(dict(FLOATS, descr="|O"), bytes(32))}, "holds dtype object"),
    "negative shape": ({"__graphnn__": header_member(tree({"array": "a0"})),
                        "a0": npy(dict(FLOATS, shape=(-4,)))}, r"declares the shape \(-4,\)"),
    "array header not a dict": ({"__graphnn__": header_member(tree({"array": "a0"})),
                                 "a0": npy("{'descr': '<f4', 'shape': (4,")}, "no readable array header"),
    "header not bytes": ({"__graphnn__": npy(FLOATS, bytes(16))}, "entry is not text"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_files_raise_checkpoint_error(tmp_path, case):
    members, pattern = MALFORMED[case]
    archive(tmp_path / "bad.ckpt", members)
    with pytest.raises(gn.CheckpointError, match=pattern):
        gn.load(tmp_path / "bad.ckpt")


def test_a_compressed_member_is_refused_before_anything_is_allocated(tmp_path):
    """4 MB of zeros deflate to 4 kB: a file may not expand into arrays larger than itself."""
    path = tmp_path / "bomb.ckpt"
    data = npy(dict(FLOATS, shape=(10**6,)), bytes(4 * 10**6))
    archive(path, {"__graphnn__": header_member(tree({"array": "a0"})), "a0": data}, deflated=("a0",))
    assert path.stat().st_size < 20_000
    tracemalloc.start()
    try:
        with pytest.raises(gn.CheckpointError, match="'a0.npy' is compressed"):
            gn.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_damaged_files_raise_only_checkpoint_error(tmp_path):
    """Random damage to a real checkpoint: to its bytes, and to its members' content (with the CRCs
    made right again, so the parsers see it)."""
    gn.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    sgd = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    good = tmp_path / "good.ckpt"
    gn.save({"model": model.state_dict(), "optimizer": sgd.state_dict(), "epoch": 3, "t": (1, None, "x")}, good)
    raw = good.read_bytes()
    with zipfile.ZipFile(good) as z:
        members = {info.filename[:-len(".npy")]: z.read(info) for info in z.infolist()}
    rng = np.random.default_rng(0)
    path = tmp_path / "damaged.ckpt"
    alphabet = b'{}[](),:"\' 0123456789-eE.TFNtruefalsnul<f4O\x00\xff'
    outcomes = {"loaded": 0, "refused": 0}
    for trial in range(600):
        if trial % 2:
            damaged = bytearray(raw)
            for _ in range(rng.integers(1, 4)):
                damaged[rng.integers(len(damaged))] = rng.integers(256)
            path.write_bytes(bytes(damaged[:rng.integers(len(damaged) // 2, len(damaged) + 1)]))
        else:
            name = list(members)[rng.integers(len(members))]
            content = bytearray(members[name])
            for _ in range(rng.integers(1, 4)):
                at = rng.integers(min(len(content), 130))  # mostly the .npy header and the JSON
                content[at:at + rng.integers(0, 2)] = bytes([alphabet[rng.integers(len(alphabet))]])
            archive(path, {**members, name: bytes(content)})
        try:
            gn.load(path)
            outcomes["loaded"] += 1
        except gn.CheckpointError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 500
