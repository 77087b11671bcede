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
import os
import sys

import torch
import torch.nn.functional as F

# The model and the safetensors reader are the side-by-side benchmark's PyTorch peer.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "peers"))
from torch_seq2seq import Seq2Seq, load_safetensors  # noqa: E402


def preprocess_d2l(text):
    text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
    out = []
    for i, ch in enumerate(text):
        if i > 0 and ch in ",.!?" and text[i - 1] != " ":
            out.append(" ")
        out.append(ch)
    return [t for t in "".join(out).split(" ") if t]


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
        logits = model.decode_teacher(model.encode(src, torch.tensor([len(s) for s in srcs])), tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1), ignore_index=0)
    print(f"pairs {B}\nloss per token {loss.item():.6f}")


if __name__ == "__main__":
    main()
