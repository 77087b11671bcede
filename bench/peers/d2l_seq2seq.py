#!/usr/bin/python3
"""The d2l-style PyTorch peer of the Seq2Seq side-by-side benchmark (bench/side_by_side.py runs it).

The same model as kiln's and as torch_seq2seq.py's (it subclasses that peer), written the way d2l.ai
writes it (chapter 10.7, Seq2SeqEncoder / Seq2SeqDecoder; 11.4, Seq2SeqAttentionDecoder, for
Bahdanau): the padded batch goes straight through nn.GRU / nn.LSTM with no packing, the decoder's
context is the encoder's last output (enc_outputs[-1]), the loss is d2l's masked mean
(cross-entropy * mask, summed, / mask.sum()), the gradient is clipped with d2l's loop
(grad_clipping: the norm summed parameter by parameter, then `if norm > theta` on the host),
torch.optim.Adam; with attention, d2l's AdditiveAttention projects every key again at every decoder
step (torch_seq2seq.py projects them once). The weights are kiln's (the decoder input is
[embedding, context] in kiln's column order, where d2l's attention decoder writes
[context, embedding]), loaded from what `seq2seq_side export` wrote.

Because nothing is packed, a sentence's padded source steps update the encoder state (and, with
attention, the keys are still masked, but the decoder starts from that state), so on a padded
batch its loss is not kiln's. What `check` holds it to instead:
  - it loads kiln's weights with strict=True (the same names and shapes);
  - on the batch unpadded (every source read to its full length, pads as tokens: kiln computed the
    same, meta.json "unpadded"), its loss before and after one d2l training step is kiln's within
    1e-4;
  - on the padded batch it only prints its loss next to kiln's, the difference being the state.
It has no decoding task: d2l decodes greedily only, one sentence at a time (predict_seq2seq; the
newer predict_step runs the padded batch for a fixed num_steps with no stop at <eos>), no beam search:
other work than kiln's batched greedy and beam search, so those rows stay with torch_seq2seq.py.

    d2l_seq2seq.py check DIR [--device cpu|cuda]
    d2l_seq2seq.py time DIR --task step [--steps N] [--warmup W] [--device]
        one JSON line: each repetition's milliseconds, the peak CUDA bytes, the BLAS in use.
"""
import sys

import torch
import torch.nn.functional as F

from torch_seq2seq import Seq2Seq, check_step, load, parse_args, timed


class D2lSeq2Seq(Seq2Seq):
    def __init__(self, c):
        assert not c["bidirectional"], "d2l's Seq2SeqEncoder is unidirectional"
        super().__init__(c)

    def encode(self, src, src_len_cpu):
        """d2l's Seq2SeqEncoder: the padded batch straight through the RNN (padded steps update the
        state). src [S, B] -> dict of what the decoder needs."""
        outputs, state = self.encoder.rnn(self.encoder.embedding(src))  # [S, B, H]
        enc = {"state": state, "context": outputs[-1]}
        if self.attention:
            enc["keys"] = outputs.transpose(0, 1)  # [B, S, H]
            # d2l's masked_softmax: keys past a sentence's valid length get no weight.
            enc["pad"] = (torch.arange(src.shape[0], device=src.device)[None, :] >=
                          src_len_cpu.to(src.device)[:, None])
        return enc

    def _attend_and_step(self, enc, emb, state):
        # d2l's AdditiveAttention.forward applies W_k to all the keys at every call.
        attention = self.decoder.attention
        ctx = attention(self._top(state), attention.w_k(enc["keys"]), enc["keys"], enc["pad"])
        y, state = self.decoder.rnn(torch.cat([emb, ctx], -1).unsqueeze(0), state)
        return y[0], state


def d2l_loss(logits, tgt_out, pad_id):
    """d2l's Seq2Seq.loss: per-token cross-entropy, masked, summed, / the number of real tokens."""
    l = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1), reduction="none")
    mask = (tgt_out.reshape(-1) != pad_id).type(torch.float32)
    return (l * mask).sum() / mask.sum()


def grad_clipping(model, theta):
    """d2l's grad_clipping / Trainer.clip_gradients, as d2l writes it."""
    params = [p for p in model.parameters() if p.requires_grad]
    norm = torch.sqrt(sum(torch.sum((p.grad ** 2)) for p in params))
    if norm > theta:
        for param in params:
            param.grad[:] *= theta / norm


def train_step(model, opt, batch):
    """One step as d2l's Trainer runs it; returns the loss before it."""
    opt.zero_grad()
    logits = model.decode_teacher(model.encode(batch["source"], batch["lengths_cpu"]), batch["target_in"])
    loss = d2l_loss(logits, batch["target_out"], model.c["pad_id"])
    loss.backward()
    grad_clipping(model, 1)
    opt.step()
    return loss


def check(args):
    meta, model, batch = load(args.dir, args.device, D2lSeq2Seq)  # strict=True: kiln's names, shapes
    S = batch["source"].shape[0]
    if not bool((batch["lengths_cpu"] == S).all()):
        with torch.no_grad():
            padded = d2l_loss(model.decode_teacher(model.encode(batch["source"], batch["lengths_cpu"]),
                                                   batch["target_in"]), batch["target_out"], model.c["pad_id"])
        print(f"  padded batch, not checked: d2l-style loss {padded.item():.6f}, kiln {meta['loss0']:.6f} "
              f"(|diff| {abs(padded.item() - meta['loss0']):.2e}: padded steps update the state here)")
    print("  the batch unpadded (every source read to its full length):")
    full = dict(batch, lengths_cpu=torch.full_like(batch["lengths_cpu"], S))
    failures = []
    check_step(model, full, meta["unpadded"], train_step, d2l_loss, failures, label="d2l")
    if failures:
        print("MISMATCH in " + args.dir + ": " + "; ".join(failures))
        sys.exit(1)


def main():
    args = parse_args(__doc__, ["step"])
    check(args) if args.command == "check" else timed(args, D2lSeq2Seq, train_step)


if __name__ == "__main__":
    main()
