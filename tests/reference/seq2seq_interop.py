#!/usr/bin/python3
"""Interop check: the same Seq2Seq in PyTorch, loaded from a kiln checkpoint.

Builds kiln's encoder-decoder (models/seq2seq/model.h) with torch.nn modules under the same
parameter names, loads the checkpoint's model.safetensors with load_state_dict (strict), and
prints the teacher-forced cross-entropy per real target token on a TSV file of sentence pairs.
`kiln eval --checkpoint DIR --data FILE` prints the same number ("loss per token"); they agree
to ~1e-6.

    /usr/bin/python3 tests/reference/seq2seq_interop.py runs/demo/best pairs.tsv

Needs Debian's python3-torch (apt-get install python3-torch libopenblas0-pthread). Supports
GRU/LSTM cells, uni/bidirectional encoders, and no attention or Bahdanau attention.
"""
import json
import re
import struct
import sys

import torch
import torch.nn.functional as F
from torch import nn

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32, "I64": torch.int64}


def load_safetensors(path):
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


def preprocess_d2l(text):
    text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
    out = []
    for i, ch in enumerate(text):
        if i > 0 and ch in ",.!?" and text[i - 1] != " ":
            out.append(" ")
        out.append(ch)
    return [t for t in "".join(out).split(" ") if t]


class Attention(nn.Module):
    def __init__(self, hidden, keys, size):
        super().__init__()
        self.w_q = nn.Linear(hidden, size, bias=False)
        self.w_k = nn.Linear(keys, size, bias=False)
        self.w_v = nn.Linear(size, 1, bias=False)


class Holder(nn.Module):
    pass


class Seq2Seq(nn.Module):
    def __init__(self, c):
        super().__init__()
        rnn = nn.LSTM if c["cell"] == "lstm" else nn.GRU
        d = 2 if c["bidirectional"] else 1
        self.c, self.d = c, d
        self.encoder = Holder()
        self.encoder.embedding = nn.Embedding(c["source_vocab"], c["embed_size"], padding_idx=c["pad_id"])
        self.encoder.rnn = rnn(c["embed_size"], c["hidden_size"], c["num_layers"], bidirectional=c["bidirectional"])
        if c["bidirectional"]:
            self.bridge = nn.Linear(2 * c["hidden_size"], c["hidden_size"])
        att = c["attention"]
        assert att in ("none", "bahdanau"), "this script covers no attention and Bahdanau"
        context = c["hidden_size"] if att == "none" else d * c["hidden_size"]
        self.decoder = Holder()
        self.decoder.embedding = nn.Embedding(c["target_vocab"], c["embed_size"], padding_idx=c["pad_id"])
        self.decoder.rnn = rnn(c["embed_size"] + context, c["hidden_size"], c["num_layers"])
        if att == "bahdanau":
            self.decoder.attention = Attention(c["hidden_size"], d * c["hidden_size"],
                                               c["attention_size"] or c["hidden_size"])
        self.decoder.dense = nn.Linear(c["hidden_size"], c["target_vocab"])

    def forward(self, src, src_len, tgt_in):
        c, d = self.c, self.d
        L, H, B = c["num_layers"], c["hidden_size"], src.shape[1]
        packed = nn.utils.rnn.pack_padded_sequence(self.encoder.embedding(src), src_len, enforce_sorted=False)
        out, state = self.encoder.rnn(packed)
        keys, _ = nn.utils.rnn.pad_packed_sequence(out, total_length=src.shape[0])  # [S, B, dH], 0 at padding
        keys = keys.transpose(0, 1)

        def bridge(s):
            if d == 1:
                return s
            return self.bridge(s.reshape(L, 2, B, H).transpose(1, 2).reshape(L, B, 2 * H))

        state = tuple(bridge(s) for s in state) if isinstance(state, tuple) else bridge(state)
        top = (state[0] if isinstance(state, tuple) else state)[-1]
        emb = self.decoder.embedding(tgt_in)
        if c["attention"] == "none":
            x = torch.cat([emb, top.unsqueeze(0).expand(emb.shape[0], -1, -1)], -1)
            y, _ = self.decoder.rnn(x, state)
            return self.decoder.dense(y)
        a = self.decoder.attention
        pad = torch.arange(src.shape[0])[None, :] >= src_len[:, None]
        proj = a.w_k(keys)
        logits = []
        for t in range(tgt_in.shape[0]):
            h = state[0] if isinstance(state, tuple) else state
            scores = a.w_v(torch.tanh(proj + a.w_q(h[-1]).unsqueeze(1))).squeeze(-1)
            w = torch.softmax(scores.masked_fill(pad, -1e9), -1)
            ctx = torch.bmm(w.unsqueeze(1), keys).squeeze(1)
            y, state = self.decoder.rnn(torch.cat([emb[t], ctx], -1).unsqueeze(0), state)
            logits.append(self.decoder.dense(y[0]))
        return torch.stack(logits)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    ckpt, pairs_path = sys.argv[1], sys.argv[2]
    config = json.load(open(ckpt + "/config.json"))["model"]
    src_vocab = {t: i for i, t in enumerate(open(ckpt + "/source_vocab.txt", encoding="utf-8").read().splitlines())}
    tgt_vocab = {t: i for i, t in enumerate(open(ckpt + "/target_vocab.txt", encoding="utf-8").read().splitlines())}
    pairs = [line.rstrip("\n").split("\t")[:2] for line in open(pairs_path, encoding="utf-8") if "\t" in line]
    unk, bos, eos = 1, config["bos_id"], config["eos_id"]
    srcs = [[src_vocab.get(t, unk) for t in preprocess_d2l(s)] + [eos] for s, _ in pairs]
    tgts = [[tgt_vocab.get(t, unk) for t in preprocess_d2l(t)] + [eos] for _, t in pairs]
    S, T, B = max(map(len, srcs)), max(map(len, tgts)), len(pairs)
    src = torch.zeros(S, B, dtype=torch.long)
    tgt_out = torch.zeros(T, B, dtype=torch.long)
    tgt_in = torch.zeros(T, B, dtype=torch.long)
    for b, (s, t) in enumerate(zip(srcs, tgts)):
        src[:len(s), b] = torch.tensor(s)
        tgt_out[:len(t), b] = torch.tensor(t)
        tgt_in[0, b] = bos
        tgt_in[1:, b] = tgt_out[:-1, b]
    model = Seq2Seq(config)
    model.load_state_dict(load_safetensors(ckpt + "/model.safetensors"), strict=True)
    model.eval()
    with torch.no_grad():
        logits = model(src, torch.tensor([len(s) for s in srcs]), tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1), ignore_index=0)
    print(f"pairs {B}\nloss per token {loss.item():.6f}")


if __name__ == "__main__":
    main()
