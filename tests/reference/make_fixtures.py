#!/usr/bin/python3
"""Make kiln's PyTorch reference fixtures (small safetensors files under tests/data/).

Files written (see tests/reference/README.md for every tensor name):
  tests/data/lstm.safetensors           torch.nn.LSTM(3, 4, num_layers=2): outputs and gradients
  tests/data/gru.safetensors            torch.nn.GRU(3, 4, num_layers=2): outputs and gradients
  tests/data/cross_entropy.safetensors  nn.Linear(8, 11) + F.cross_entropy with label smoothing
  tests/data/optimizers.safetensors     clip_grad_norm_ + two steps of SGD / Adam / AdamW / RMSprop
  tests/data/bf16.safetensors           f32 values and PyTorch's round-to-nearest-even bfloat16 of them

Run from the repository root:
  apt-get install python3-torch libopenblas0-pthread   # Debian; python3-torch is 1.13
  /usr/bin/python3 tests/reference/make_fixtures.py

kiln's test suite (tests/test_reference.cpp) only reads these files; it never needs PyTorch.
The script is deterministic (a fixed seed per fixture, one thread, float32 throughout) and
writes the safetensors format by hand, so the `safetensors` Python package is not needed.
Each file is re-read and checked after it is written.
"""

import json
import os
import struct
import sys

import torch
import torch.nn.functional as F
from torch import nn

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA_DIR = os.path.join(REPO_ROOT, "tests", "data")

DTYPES = {
    torch.float32: ("F32", 4),
    torch.float64: ("F64", 8),
    torch.int64: ("I64", 8),
    torch.bfloat16: ("BF16", 2),
}
# F32 and BF16 go through their raw bits, so NaN payloads survive (a Python float would quiet them).
STRUCT_CODES = {"F32": "i", "F64": "d", "I64": "q", "BF16": "H"}


# --------------------------------------------------------------------------- safetensors I/O


def tensor_bytes(t):
    """Raw little-endian bytes of a contiguous CPU tensor (no numpy needed)."""
    code, _ = DTYPES[t.dtype]
    t = t.detach().contiguous().reshape(-1)
    if t.dtype == torch.bfloat16:  # the bits, as unsigned 16-bit integers
        t = t.view(torch.int16).to(torch.int32) & 0xFFFF
    elif t.dtype == torch.float32:
        t = t.view(torch.int32)
    values = t.tolist()
    return struct.pack("<%d%s" % (len(values), STRUCT_CODES[code]), *values)


def save_safetensors(path, tensors, metadata=None):
    header = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype not in DTYPES:
            raise TypeError("%s: unsupported dtype %s" % (name, t.dtype))
        data = tensor_bytes(t)
        header[name] = {
            "dtype": DTYPES[t.dtype][0],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-(8 + len(text))) % 8)  # data section starts at a multiple of 8
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in chunks:
            f.write(data)


def load_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    assert (8 + n) % 8 == 0, "data section not 8-byte aligned"
    data = blob[8 + n :]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    expected_begin = 0
    for name in sorted(header, key=lambda k: header[k]["data_offsets"][0]):
        info = header[name]
        begin, end = info["data_offsets"]
        assert begin == expected_begin, "%s: offsets not contiguous" % name
        expected_begin = end
        code = info["dtype"]
        size = {"F32": 4, "F64": 8, "I64": 8, "BF16": 2}[code]
        count = (end - begin) // size
        numel = 1
        for d in info["shape"]:
            numel *= d
        assert count == numel and (end - begin) % size == 0, "%s: size mismatch" % name
        values = struct.unpack("<%d%s" % (count, STRUCT_CODES[code]), data[begin:end])
        if code == "BF16":
            bits = torch.tensor(values, dtype=torch.int32).to(torch.int16)  # wraps like the bits
            tensors[name] = bits.view(torch.bfloat16).reshape(info["shape"])
            continue
        if code == "F32":
            bits = torch.tensor(values, dtype=torch.int32)
            tensors[name] = bits.view(torch.float32).reshape(info["shape"])
            continue
        dtype = {"F64": torch.float64, "I64": torch.int64}[code]
        tensors[name] = torch.tensor(values, dtype=dtype).reshape(info["shape"])
    assert expected_begin == len(data), "trailing bytes after the last tensor"
    return tensors, metadata


def write_and_verify(filename, tensors, metadata=None):
    path = os.path.join(DATA_DIR, filename)
    tensors = {k: v.detach().clone() for k, v in tensors.items()}
    save_safetensors(path, tensors, metadata)
    loaded, meta = load_safetensors(path)
    assert sorted(loaded) == sorted(tensors), "%s: tensor names differ after reload" % filename
    for name, t in tensors.items():  # every tensor, bit-exact
        back = loaded[name]
        assert back.dtype == t.dtype and back.shape == t.shape, "%s: %s dtype/shape" % (filename, name)
        assert torch.equal(back, t), "%s: %s values differ after reload" % (filename, name)
    if metadata:
        assert meta == {str(k): str(v) for k, v in metadata.items()}, "%s: metadata differs" % filename
    size = os.path.getsize(path)
    assert size < 100 * 1024, "%s is too large (%d bytes)" % (filename, size)
    print("%-26s %3d tensors  %6d bytes" % (filename, len(tensors), size))
    return loaded


# --------------------------------------------------------------------------- fixtures

T, B, L, H, INPUT = 5, 3, 2, 4, 3
LENGTHS = [5, 2, 4]


def rnn_fixture(cls, seed, filename):
    torch.manual_seed(seed)
    rnn = cls(input_size=INPUT, hidden_size=H, num_layers=L)
    lstm = cls is nn.LSTM
    params = {name: p.detach().clone() for name, p in rnn.named_parameters()}
    x = torch.randn(T, B, INPUT)
    h0 = torch.randn(L, B, H)
    c0 = torch.randn(L, B, H) if lstm else None
    grad_y = torch.randn(T, B, H)
    grad_h_n = torch.randn(L, B, H)
    grad_c_n = torch.randn(L, B, H) if lstm else None
    lengths = torch.tensor(LENGTHS, dtype=torch.int64)

    out = dict(params)
    out.update(x=x, h0=h0, grad_y=grad_y, grad_h_n=grad_h_n, lengths=lengths)
    if lstm:
        out.update(c0=c0, grad_c_n=grad_c_n)

    for case in ("plain", "init", "packed"):
        module = cls(input_size=INPUT, hidden_size=H, num_layers=L)
        with torch.no_grad():  # fresh leaves holding the same parameter values
            for name, p in module.named_parameters():
                p.copy_(params[name])
        module.zero_grad()
        xl = x.clone().requires_grad_(True)
        h0l = h0.clone().requires_grad_(True)
        c0l = c0.clone().requires_grad_(True) if lstm else None
        state = (h0l, c0l) if lstm else h0l
        if case == "plain":
            y, hidden = module(xl)
        elif case == "init":
            y, hidden = module(xl, state)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(xl, lengths, enforce_sorted=False)
            packed_out, hidden = module(packed, state)
            y, _ = nn.utils.rnn.pad_packed_sequence(packed_out, total_length=T)
        h_n, c_n = hidden if lstm else (hidden, None)
        loss = (y * grad_y).sum() + (h_n * grad_h_n).sum()
        if lstm:
            loss = loss + (c_n * grad_c_n).sum()
        loss.backward()

        out[case + ".y"] = y
        out[case + ".h_n"] = h_n
        if lstm:
            out[case + ".c_n"] = c_n
        out[case + ".grad.x"] = xl.grad
        if case != "plain":
            out[case + ".grad.h0"] = h0l.grad
            if lstm:
                out[case + ".grad.c0"] = c0l.grad
        for name, p in module.named_parameters():
            out[case + ".grad." + name] = p.grad

    # Sanity: padded steps of the packed output are zero.
    for b, n in enumerate(LENGTHS):
        assert torch.all(out["packed.y"][n:, b] == 0)

    meta = {
        "description": "torch.nn.%s(input_size=%d, hidden_size=%d, num_layers=%d), time-major [T, B, ...], "
        "seed %d; loss = sum(y*grad_y) + sum(h_n*grad_h_n)%s" % (
            cls.__name__, INPUT, H, L, seed, " + sum(c_n*grad_c_n)" if lstm else ""),
        "torch_version": torch.__version__,
    }
    loaded = write_and_verify(filename, out, meta)
    # Spot-check two reloaded tensors against the live module outputs.
    assert torch.equal(loaded["weight_ih_l0"], params["weight_ih_l0"])
    assert torch.equal(loaded["packed.grad.x"], out["packed.grad.x"])


def cross_entropy_fixture():
    torch.manual_seed(2)
    linear = nn.Linear(8, 11)
    x = torch.randn(6, 8)
    targets = torch.tensor([3, -100, 10, 0, -100, 7], dtype=torch.int64)
    weight = linear.weight.detach().clone()
    bias = linear.bias.detach().clone()

    xl = x.clone().requires_grad_(True)
    logits = linear(xl)
    loss = F.cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.1, reduction="mean")
    loss.backward()
    with torch.no_grad():
        loss_sum = F.cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.1, reduction="sum")
        loss_none = F.cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.1, reduction="none")
        loss_no_smoothing = F.cross_entropy(logits, targets, ignore_index=-100, label_smoothing=0.0,
                                            reduction="mean")
    assert loss.shape == () and loss_none.shape == (6,)
    assert loss_none[1] == 0 and loss_none[4] == 0

    out = {
        "x": x, "targets": targets, "weight": weight, "bias": bias, "logits": logits,
        "loss": loss, "grad.weight": linear.weight.grad, "grad.bias": linear.bias.grad,
        "grad.x": xl.grad, "loss_sum": loss_sum, "loss_none": loss_none,
        "loss_no_smoothing": loss_no_smoothing,
    }
    meta = {
        "description": "logits = x @ weight.T + bias; F.cross_entropy(logits, targets, ignore_index=-100, "
        "label_smoothing=0.1); seed 2",
        "torch_version": torch.__version__,
    }
    loaded = write_and_verify("cross_entropy.safetensors", out, meta)
    assert loaded["loss"].shape == () and torch.equal(loaded["targets"], targets)


OPTIMIZERS = {
    "sgd": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    "sgd_nesterov": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "adam": (torch.optim.Adam, dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)),
    "adamw": (torch.optim.AdamW, dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)),
    "rmsprop": (torch.optim.RMSprop, dict(lr=0.01, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0)),
    "rmsprop_momentum": (torch.optim.RMSprop, dict(lr=0.01, alpha=0.99, eps=1e-8, momentum=0.9)),
}
MAX_NORM = 1.0


def optimizers_fixture():
    torch.manual_seed(3)
    p0 = torch.randn(3, 4)
    p1 = torch.randn(5)
    grads = {
        1: (torch.randn(3, 4) * 2, torch.randn(5) * 2),
        2: (torch.randn(3, 4) * 2, torch.randn(5) * 2),
    }
    out = {"p0": p0, "p1": p1}
    for k, (g0, g1) in grads.items():
        out["g0_step%d" % k] = g0
        out["g1_step%d" % k] = g1

    for name, (cls, kwargs) in OPTIMIZERS.items():
        q0 = p0.clone().requires_grad_(True)
        q1 = p1.clone().requires_grad_(True)
        opt = cls([q0, q1], **kwargs)
        for k, (g0, g1) in grads.items():
            q0.grad = g0.clone()
            q1.grad = g1.clone()
            total = torch.nn.utils.clip_grad_norm_([q0, q1], max_norm=MAX_NORM)
            assert total > MAX_NORM, "gradient norm should exceed max_norm so clipping matters"
            out["%s.step%d.total_norm" % (name, k)] = total.reshape(())
            if k == 1 and "clip.g0" not in out:
                out["clip.g0"] = q0.grad.clone()
                out["clip.g1"] = q1.grad.clone()
            opt.step()
            out["%s.step%d.p0" % (name, k)] = q0.detach().clone()
            out["%s.step%d.p1" % (name, k)] = q1.detach().clone()

    hyper = {name: dict(optimizer=cls.__name__, **kwargs) for name, (cls, kwargs) in OPTIMIZERS.items()}
    meta = {
        "hyperparameters": json.dumps(hyper, sort_keys=True),
        "clip_grad_norm": json.dumps({"max_norm": MAX_NORM, "norm_type": 2.0}),
        "description": "per step k: p.grad = g*_stepk; clip_grad_norm_([p0, p1], 1.0); optimizer.step(); seed 3",
        "torch_version": torch.__version__,
    }
    loaded = write_and_verify("optimizers.safetensors", out, meta)
    assert torch.equal(loaded["adam.step2.p0"], out["adam.step2.p0"])
    assert loaded["sgd.step1.total_norm"].shape == ()


def bf16_fixture():
    """f32 values and torch's bfloat16 of each (round to nearest, ties to even): random values over
    many magnitudes, then the edges by their bits: ties that round down and up, just above and
    below a tie, the largest finite values, denormals, signed zeros, infinities and NaNs."""
    g = torch.Generator().manual_seed(7)
    random = torch.randn(600, generator=g) * torch.exp(torch.randn(600, generator=g) * 20)
    edge_bits = [
        0x3F800000, 0x3F808000, 0x3F808001, 0x3F817FFF, 0x3F818000, 0x3F828000, 0xBF818000,
        0x7F7F7FFF, 0x7F7F8000, 0x7F7FFFFF, 0xFF7FFFFF, 0x00000001, 0x00008000, 0x00018000,
        0x007FFFFF, 0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000,
        0x7F800001, 0x7FBFFFFF,
    ]
    edges = torch.tensor([b - (1 << 32) if b >= 1 << 31 else b for b in edge_bits],
                         dtype=torch.int32).view(torch.float32)
    x = torch.cat([random, edges])
    out = {"x": x, "x_bf16": x.to(torch.bfloat16)}
    write_and_verify_bits("bf16.safetensors", out)


def write_and_verify_bits(filename, tensors):
    """write_and_verify for tensors holding NaNs (torch.equal is false on NaN): bits compared."""
    path = os.path.join(DATA_DIR, filename)
    save_safetensors(path, tensors)
    loaded, _ = load_safetensors(path)
    for name, t in tensors.items():
        as_int = torch.int16 if t.dtype == torch.bfloat16 else torch.int32
        assert torch.equal(loaded[name].view(as_int), t.view(as_int)), "%s: %s" % (filename, name)
    print("%-26s %3d tensors  %6d bytes" % (filename, len(tensors), os.path.getsize(path)))


def main():
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    os.makedirs(DATA_DIR, exist_ok=True)
    print("torch %s" % torch.__version__)
    rnn_fixture(nn.LSTM, 0, "lstm.safetensors")
    rnn_fixture(nn.GRU, 1, "gru.safetensors")
    cross_entropy_fixture()
    optimizers_fixture()
    bf16_fixture()
    return 0


if __name__ == "__main__":
    sys.exit(main())
