#!/usr/bin/python3
"""PyTorch's half of the Seq2Seq side-by-side benchmark (bench/side_by_side.py runs it).

The same model as kiln's models/seq2seq/model.h (d2l's encoder-decoder: decoder state starts at the
encoder's final state, the encoder's top-layer final state is a fixed context concatenated to
every decoder input; or Bahdanau attention over the encoder outputs), written the way a PyTorch
user would: nn.GRU / nn.LSTM (cuDNN on the GPU), pack_padded_sequence for padded sources,
F.cross_entropy with ignore_index, clip_grad_norm_, torch.optim.Adam. It loads the weights and the
batch that `seq2seq_side export` wrote, so both sides start from the same numbers. (The other peer,
d2l_seq2seq.py, is the same model as d2l writes it: no packing, d2l's clip loop.)

    torch_seq2seq.py check DIR [--device cpu|cuda]
        the loss before and after one training step, and the greedy and beam-5 outputs, against
        kiln's (DIR/meta.json); exits 1 on a mismatch.
    torch_seq2seq.py time DIR --task step|greedy|beam5 [--steps N] [--warmup W] [--device]
        one JSON line: each repetition's milliseconds, the peak CUDA bytes, the BLAS in use.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32, "I64": torch.int64}


def load_safetensors(path):
    """name -> tensor, from a safetensors file (the format is 8 bytes of header length, a JSON
    header of dtype/shape/offsets, then the raw little-endian data)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[b:e]), dtype=DTYPES[info["dtype"]]) if e > b else torch.empty(0)
        out[name] = t.reshape(info["shape"]).clone()
    return out


class Holder(nn.Module):
    """Gives parameters kiln's names (encoder.*, decoder.*)."""


class Attention(nn.Module):
    """Additive (Bahdanau): score(q, k) = w_v^T tanh(W_q q + W_k k)."""

    def __init__(self, query, keys, size):
        super().__init__()
        self.w_q = nn.Linear(query, size, bias=False)
        self.w_k = nn.Linear(keys, size, bias=False)
        self.w_v = nn.Linear(size, 1, bias=False)

    def forward(self, query, key_proj, keys, pad):
        scores = self.w_v(torch.tanh(key_proj + self.w_q(query).unsqueeze(1))).squeeze(-1)  # [B, S]
        weights = torch.softmax(scores.masked_fill(pad, -1e9), -1)
        return torch.bmm(weights.unsqueeze(1), keys).squeeze(1)  # [B, Hk]


class Seq2Seq(nn.Module):
    """kiln's Seq2Seq (config = the "model" object of kiln's config.json)."""

    def __init__(self, c):
        super().__init__()
        rnn = nn.LSTM if c["cell"] == "lstm" else nn.GRU
        d = 2 if c["bidirectional"] else 1
        self.c, self.d, self.lstm = c, d, c["cell"] == "lstm"
        self.encoder = Holder()
        self.encoder.embedding = nn.Embedding(c["source_vocab"], c["embed_size"], padding_idx=c["pad_id"])
        self.encoder.rnn = rnn(c["embed_size"], c["hidden_size"], c["num_layers"], bidirectional=c["bidirectional"])
        if c["bidirectional"]:
            self.bridge = nn.Linear(2 * c["hidden_size"], c["hidden_size"])
        assert c["attention"] in ("none", "bahdanau"), "this peer covers no attention and Bahdanau"
        self.attention = c["attention"] == "bahdanau"
        context = d * c["hidden_size"] if self.attention else c["hidden_size"]
        self.decoder = Holder()
        self.decoder.embedding = nn.Embedding(c["target_vocab"], c["embed_size"], padding_idx=c["pad_id"])
        self.decoder.rnn = rnn(c["embed_size"] + context, c["hidden_size"], c["num_layers"])
        if self.attention:
            self.decoder.attention = Attention(c["hidden_size"], d * c["hidden_size"],
                                               c["attention_size"] or c["hidden_size"])
        self.decoder.dense = nn.Linear(c["hidden_size"], c["target_vocab"])

    def _top(self, state):
        return (state[0] if self.lstm else state)[-1]

    def encode(self, src, src_len_cpu):
        """src [S, B], lengths [B] on the host -> dict of what the decoder needs."""
        S, B = src.shape
        emb = self.encoder.embedding(src)
        if bool((src_len_cpu == S).all()):  # nothing padded: skip the packing
            keys, state = self.encoder.rnn(emb)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(emb, src_len_cpu, enforce_sorted=False)
            out, state = self.encoder.rnn(packed)
            keys, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=S)
        if self.d == 2:
            L, H = self.c["num_layers"], self.c["hidden_size"]

            def bridge(s):
                return self.bridge(s.reshape(L, 2, B, H).transpose(1, 2).reshape(L, B, 2 * H))

            state = tuple(bridge(s) for s in state) if self.lstm else bridge(state)
        enc = {"state": state, "context": self._top(state)}
        if self.attention:
            enc["keys"] = keys.transpose(0, 1)  # [B, S, Hk]
            enc["key_proj"] = self.decoder.attention.w_k(enc["keys"])
            enc["pad"] = torch.arange(S, device=src.device)[None, :] >= src_len_cpu.to(src.device)[:, None]
        return enc

    def decode_teacher(self, enc, tgt_in):
        emb = self.decoder.embedding(tgt_in)  # [T, B, E]
        if not self.attention:
            x = torch.cat([emb, enc["context"].unsqueeze(0).expand(emb.shape[0], -1, -1)], -1)
            y, _ = self.decoder.rnn(x, enc["state"])
            return self.decoder.dense(y)
        state, logits = enc["state"], []
        for t in range(tgt_in.shape[0]):
            y, state = self._attend_and_step(enc, emb[t], state)
            logits.append(y)
        return self.decoder.dense(torch.stack(logits))

    def _attend_and_step(self, enc, emb, state):
        ctx = self.decoder.attention(self._top(state), enc["key_proj"], enc["keys"], enc["pad"])
        y, state = self.decoder.rnn(torch.cat([emb, ctx], -1).unsqueeze(0), state)
        return y[0], state

    def decode_step(self, enc, token, state):
        """token [N] -> logits [N, V], the new state."""
        emb = self.decoder.embedding(token)
        if self.attention:
            y, state = self._attend_and_step(enc, emb, state)
        else:
            y, state = self.decoder.rnn(torch.cat([emb, enc["context"]], -1).unsqueeze(0), state)
            y = y[0]
        return self.decoder.dense(y), state

    def select_rows(self, enc, state, index):
        """Rows `index` of the per-sentence tensors and of the state (beams follow their parents).
        The encoder's initial state is dropped: decoding carries its own."""
        enc = {k: v.index_select(0, index) for k, v in enc.items() if k != "state"}
        state = tuple(s.index_select(1, index) for s in state) if self.lstm else state.index_select(1, index)
        return enc, state


def masked_loss(logits, tgt_out, pad_id):
    """Mean cross-entropy per real target token (padding = pad_id)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1), ignore_index=pad_id)


def train_step(model, opt, batch):
    """One step; returns the loss before it."""
    opt.zero_grad(set_to_none=True)
    logits = model.decode_teacher(model.encode(batch["source"], batch["lengths_cpu"]), batch["target_in"])
    loss = masked_loss(logits, batch["target_out"], model.c["pad_id"])
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss


@torch.no_grad()
def greedy(model, batch, max_length):
    c = model.c
    enc = model.encode(batch["source"], batch["lengths_cpu"])
    state, B = enc["state"], batch["source"].shape[1]
    token = torch.full((B,), c["bos_id"], dtype=torch.long, device=batch["source"].device)
    finished = torch.zeros(B, dtype=torch.bool, device=token.device)
    out = []
    for _ in range(max_length):
        logits, state = model.decode_step(enc, token, state)
        token = logits.argmax(-1)
        out.append(token)
        finished |= token == c["eos_id"]
        if bool(finished.all()):
            break
    rows = torch.stack(out, 1).tolist()
    return [r[:r.index(c["eos_id"]) + 1] if c["eos_id"] in r else r for r in rows]


@torch.no_grad()
def beam_search(model, batch, max_length, K, alpha=1.0):
    """Batched beam search with kiln's rules (docs/beam_search.md): per sentence the best 2K
    extensions of its K beams; an extension ending in <eos> (or reaching the max length) is a
    finished hypothesis scored log_prob / length^alpha; a sentence is done when K have finished and
    no alive beam can still beat the K-th, or at the max length."""
    c = model.c
    src, dev = batch["source"], batch["source"].device
    B = src.shape[1]
    enc = model.encode(src, batch["lengths_cpu"])
    enc, state = model.select_rows(enc, enc["state"], torch.arange(B, device=dev).repeat_interleave(K))
    alive_lp = torch.full((B, K), -math.inf, dtype=torch.float64, device=dev)
    alive_lp[:, 0] = 0
    alive_seq = [[] for _ in range(B * K)]
    finished = [[] for _ in range(B)]
    done = [False] * B
    token = torch.full((B * K,), c["bos_id"], dtype=torch.long, device=dev)

    def norm(lp, n):
        return lp / max(n, 1) ** alpha

    for t in range(max_length):
        logits, state = model.decode_step(enc, token, state)
        # Each beam's best 2K tokens (f32), then the best 2K of those K x 2K sums per sentence (f64).
        beam_lp, beam_tok = torch.log_softmax(logits, -1).topk(2 * K, dim=1)
        sums = (alive_lp.view(-1, 1) + beam_lp.double()).view(B, K * 2 * K)
        top_lp, top_j = sums.topk(2 * K, dim=1)
        top_tok = beam_tok.view(B, K * 2 * K).gather(1, top_j)
        top_lp, top_j, top_tok = top_lp.tolist(), top_j.tolist(), top_tok.tolist()
        parents, next_token = list(range(0, B * K)), [c["eos_id"]] * (B * K)
        next_lp = [[-math.inf] * K for _ in range(B)]
        next_seq = [[] for _ in range(B * K)]
        at_limit = t + 1 >= max_length
        for b in range(B):
            for k in range(K):
                parents[b * K + k] = b * K
            if done[b]:
                continue
            filled = 0
            for score, j, v in zip(top_lp[b], top_j[b], top_tok[b]):
                if filled == K or score == -math.inf:
                    break
                k = j // (2 * K)
                seq = alive_seq[b * K + k] + [v]
                if v == c["eos_id"] or at_limit:
                    finished[b].append((norm(score, len(seq)), seq))
                    if v == c["eos_id"]:
                        continue
                if at_limit:
                    continue
                parents[b * K + filled] = b * K + k
                next_token[b * K + filled] = v
                next_lp[b][filled] = score
                next_seq[b * K + filled] = seq
                filled += 1
            finished[b].sort(key=lambda h: -h[0])
            best_alive = max((norm(next_lp[b][k], max_length) for k in range(filled)), default=-math.inf)
            done[b] = at_limit or filled == 0 or (len(finished[b]) >= K and finished[b][K - 1][0] >= best_alive)
        if all(done):
            break
        index = torch.tensor(parents, device=dev)
        enc, state = model.select_rows(enc, state, index)
        alive_lp = torch.tensor(next_lp, dtype=torch.float64, device=dev)
        alive_seq = next_seq
        token = torch.tensor(next_token, device=dev)
    return [f[0][1] for f in finished]


def load(directory, device, model_class=Seq2Seq):
    meta = json.load(open(os.path.join(directory, "meta.json")))
    model = model_class(meta["model"])
    model.load_state_dict(load_safetensors(os.path.join(directory, "model.safetensors")), strict=True)
    model.to(device)
    batch = {k: v.to(device) for k, v in load_safetensors(os.path.join(directory, "batch.safetensors")).items()}
    batch["lengths_cpu"] = batch["lengths"].cpu()
    return meta, model, batch


def blas_in_use():
    """The BLAS library mapped into this process (PyTorch's CPU GEMMs go there)."""
    torch.ones(64, 64) @ torch.ones(64, 64)
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "blas" in os.path.basename(path).lower() or "mkl" in os.path.basename(path).lower():
                libs.add(os.path.realpath(path))
    return sorted(libs)


def agreement(ours, theirs):
    return sum(a == b for a, b in zip(ours, theirs)), len(theirs)


def check_step(model, batch, want, step, loss_fn, failures, label="torch"):
    """One training step with `step` (from the model's current weights): the loss before it and the
    loss after it, each held to want["loss0"] and want["loss1"] (kiln's) within 1e-4; a miss is
    added to `failures`."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss0 = step(model, opt, batch).item()
    with torch.no_grad():
        loss1 = loss_fn(model.decode_teacher(model.encode(batch["source"], batch["lengths_cpu"]),
                                             batch["target_in"]), batch["target_out"], model.c["pad_id"]).item()
    for name, got in (("loss0", loss0), ("loss1", loss1)):
        diff = abs(got - want[name])
        print(f"  {name}: {label} {got:.6f} kiln {want[name]:.6f} |diff| {diff:.2e}")
        if not diff <= 1e-4:
            failures.append(f"{name}: {label} {got:.6f} vs kiln {want[name]:.6f} (|diff| {diff:.2e} > 1e-4)")


def check(args):
    meta, model, batch = load(args.dir, args.device)
    failures = []
    model.eval()
    for name, got in (("greedy", greedy(model, batch, meta["max_length"])),
                      ("beam5", beam_search(model, batch, meta["max_length"], meta["beam"]))):
        same, n = agreement(got, meta[name])
        print(f"  {name}: {same}/{n} sentences identical to kiln's")
        if same < 0.9 * n:
            failures.append(f"{name} outputs differ from kiln's in {n - same} of {n} sentences")
    model.train()
    check_step(model, batch, meta, train_step, masked_loss, failures)
    if failures:
        print("MISMATCH in " + args.dir + ": " + "; ".join(failures))
        sys.exit(1)


def timed(args, model_class=Seq2Seq, step=train_step):
    meta, model, batch = load(args.dir, args.device, model_class)
    cuda = args.device.startswith("cuda")
    if args.task == "step":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        once = lambda: step(model, opt, batch)  # noqa: E731
    else:
        model.eval()
        if args.task == "greedy":
            once = lambda: greedy(model, batch, meta["max_length"])  # noqa: E731
        else:
            once = lambda: beam_search(model, batch, meta["max_length"], meta["beam"])  # noqa: E731
    if args.precision == "bf16":  # autocast's bf16 (cuDNN RNNs and cuBLAS GEMMs in bf16, fp32 master weights)
        plain = once

        def once():
            with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16):
                return plain()
    # At least --warmup repetitions and --warmup-seconds of them (kiln's side does the same).
    warm_start = time.perf_counter()
    done = 0
    while done < args.warmup or time.perf_counter() - warm_start < args.warmup_seconds:
        once()
        done += 1
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    ms = []
    for _ in range(args.steps):
        start = time.perf_counter()
        once()
        if cuda:
            torch.cuda.synchronize()
        ms.append((time.perf_counter() - start) * 1e3)
    print(json.dumps({"ms": ms, "peak_bytes": torch.cuda.max_memory_allocated() if cuda else 0,
                      "blas": blas_in_use(), "torch": torch.__version__, "threads": torch.get_num_threads()}))


def parse_args(doc, tasks):
    """The command line both peers share: check|time DIR [--device] [--task] [--steps] ..."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["check", "time"])
    p.add_argument("dir", help="a folder written by `seq2seq_side export`")
    p.add_argument("--device", default="cpu")
    p.add_argument("--task", default="step", choices=tasks)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--warmup-seconds", type=float, default=0.0,
                   help="keep warming up until this much time has passed (a CPU's clock ramps up)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (intra-op threads)")
    p.add_argument("--precision", default="f32", choices=["f32", "bf16"],
                   help="time: bf16 runs each repetition under torch.autocast(dtype=torch.bfloat16)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        # fp32 math on both sides: no TF32 in cuBLAS or cuDNN.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return args


def main():
    args = parse_args(__doc__, ["step", "greedy", "beam5"])
    check(args) if args.command == "check" else timed(args)


if __name__ == "__main__":
    main()
