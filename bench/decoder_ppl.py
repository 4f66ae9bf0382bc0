"""Held-out perplexity of a trained LLaMA-style decoder: the original vs.
ecospac's compact ONNX models vs. Torch-Pruning 1.6.1 on the same checkpoint.
Run by bench/decoder_ppl.sh, which documents the whole benchmark; the
subcommands here are its steps:

  split CORPUS OUT          file-level split of the corpus: OUT/data/train/ (copies of the
                            training files), OUT/heldout-files.txt, OUT/calib-train.txt
  heldout RUN OUT [N]       N held-out sequences of 128 tokens (tokenized as `ecospac train`
                            packs text) -> OUT/heldout.npy
  onnx NAME MODEL ORIG OUT  perplexity, parameter counts and (for a compact model) the ONNX
                            Runtime latency ratio vs ORIG -> one line of OUT/results.jsonl
  tp NAME CKPT OUT METHOD   Torch-Pruning (METHOD l2, taylor, l2-heads, taylor-heads; `dense`
                            scores the unpruned checkpoint in PyTorch) -> OUT/results.jsonl
  table OUT                 the markdown table
"""
import json
import math
import os
import re
import shutil
import statistics
import sys
import time

import numpy as np

SEQ = 128
EOS = "<|endoftext|>"
# Prose the built-in calibration corpus of ecospac takes from python3.11-doc
# (scripts/make_calibration_corpus.py, DOC_DIRS): never held out.
CALIB_DIRS = ("tutorial", "howto", "faq")
ATTN_MLP = re.compile(r"(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)")


def text_files(root):
    """As runtime-train/src/data.rs::text_files: .txt/.rst/.md under root, sorted."""
    out = []
    for d, _, fs in os.walk(root):
        out += [os.path.join(d, f) for f in fs if f.endswith((".txt", ".rst", ".md"))]
    return sorted(out)


def split(corpus, out):
    files = [os.path.relpath(f, corpus) for f in text_files(corpus)]
    eligible = [f for f in files if f.split(os.sep)[0] not in CALIB_DIRS]
    held = set(eligible[9::10])  # every 10th eligible file in sorted order
    train = [f for f in files if f not in held]
    dst = os.path.join(out, "data", "train")
    shutil.rmtree(dst, ignore_errors=True)
    for f in train:
        os.makedirs(os.path.dirname(os.path.join(dst, f)), exist_ok=True)
        shutil.copyfile(os.path.join(corpus, f), os.path.join(dst, f))
    with open(os.path.join(out, "heldout-files.txt"), "w") as w:
        w.writelines(os.path.join(corpus, f) + "\n" for f in sorted(held))
    # In-domain calibration: 256 non-empty lines of >= 40 characters from the
    # training files, evenly spaced over all such lines (no duplicates).
    lines, seen = [], set()
    for f in train:
        with open(os.path.join(corpus, f), encoding="utf-8") as r:
            for l in r:
                l = l.strip()
                if len(l) >= 40 and l not in seen:
                    seen.add(l)
                    lines.append(l)
    step = len(lines) / 256
    pick = [lines[int(i * step)] for i in range(256)]
    with open(os.path.join(out, "calib-train.txt"), "w") as w:
        w.writelines(l + "\n" for l in pick)
    print(f"{len(files)} files: {len(train)} training, {len(held)} held out; "
          f"{len(pick)} calibration lines of {len(lines)} candidates")


def tokenizer_of(ckpt):
    """The checkpoint's tokenizer.json, else the run's (`ecospac train` writes it
    beside final/, not into it)."""
    from tokenizers import Tokenizer
    for p in (os.path.join(ckpt, "tokenizer.json"), os.path.join(os.path.dirname(os.path.abspath(ckpt)), "tokenizer.json")):
        if os.path.exists(p):
            return Tokenizer.from_file(p)
    raise SystemExit(f"no tokenizer.json in or beside {ckpt}")


def heldout(run, out, n):
    tok = tokenizer_of(os.path.join(run, "final"))
    eos = tok.token_to_id(EOS)
    stream = []
    for f in open(os.path.join(out, "heldout-files.txt")).read().split():
        text = open(f, encoding="utf-8").read()
        for chunk in text.split("\n\n"):
            if chunk.strip():
                stream += tok.encode(chunk, add_special_tokens=False).ids
        if eos is not None:
            stream.append(eos)
    seqs = np.array(stream[: len(stream) // SEQ * SEQ], dtype=np.int64).reshape(-1, SEQ)
    idx = np.linspace(0, len(seqs) - 1, min(n, len(seqs))).round().astype(int)  # evenly spaced
    np.save(os.path.join(out, "heldout.npy"), seqs[idx])
    print(f"{len(stream)} held-out tokens, {len(seqs)} sequences; scoring {len(idx)}")


def nll_sum(logits, ids):
    """Summed next-token negative log-likelihood over all positions (float64)."""
    lg = logits[:, :-1].astype(np.float64)
    lg -= lg.max(-1, keepdims=True)
    lse = np.log(np.exp(lg).sum(-1))
    tgt = np.take_along_axis(lg, ids[:, 1:, None], -1)[..., 0]
    return float((lse - tgt).sum())


def session(path, threads):
    import onnxruntime as ort
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def feeds(sess, ids):
    f = {}
    for i in sess.get_inputs():
        if i.name == "input_ids":
            f[i.name] = ids
        elif i.name == "attention_mask":
            f[i.name] = np.ones_like(ids)
        elif i.name == "position_ids":
            f[i.name] = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape).copy()
        else:
            raise SystemExit(f"unexpected ONNX input {i.name}")
    return f


def onnx_params(path):
    """(all parameters, attention+MLP linear parameters) over the float initializers;
    one tensor stored twice (a tied embedding) counts once."""
    import onnx
    m = onnx.load(path, load_external_data=False)
    import hashlib
    total = attn = 0
    seen = set()
    for t in m.graph.initializer:
        if t.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16):
            continue
        n = math.prod(t.dims)
        if n <= 1:
            continue
        key = (tuple(t.dims), hashlib.sha1(t.raw_data or onnx.numpy_helper.to_array(t).tobytes()).hexdigest())
        if key in seen:
            continue
        seen.add(key)
        total += n
        if ATTN_MLP.search(t.name):
            attn += n
    return total, attn


def latency_ratio(model, orig, ids, reps=10):
    """Median of `reps` single-thread runs of batch 8 x 128, alternating with the original."""
    a, b = session(model, 1), session(orig, 1)
    fa, fb = feeds(a, ids), feeds(b, ids)
    for s, f in ((a, fa), (b, fb)):
        s.run(["logits"], f)
    ta, tb = [], []
    for _ in range(reps):
        for s, f, t in ((b, fb, tb), (a, fa, ta)):
            t0 = time.perf_counter()
            s.run(["logits"], f)
            t.append(time.perf_counter() - t0)
    return statistics.median(ta) / statistics.median(tb), statistics.median(ta), statistics.median(tb)


def append(out, row):
    with open(os.path.join(out, "results.jsonl"), "a") as w:
        w.write(json.dumps(row) + "\n")
    print(json.dumps(row))


def score_onnx(name, model, orig, out, wall):
    ids = np.load(os.path.join(out, "heldout.npy"))
    sess = session(model, 0)
    outs = [o.name for o in sess.get_outputs()]
    assert "logits" in outs, outs
    nll = 0.0
    for i in range(0, len(ids), 8):
        nll += nll_sum(sess.run(["logits"], feeds(sess, ids[i:i + 8]))[0], ids[i:i + 8])
    loss = nll / (len(ids) * (SEQ - 1))
    total, attn = onnx_params(model)
    row = dict(name=name, engine="onnxruntime", loss=loss, ppl=math.exp(loss), params=total,
               attn_mlp=attn, wall_s=wall, outputs=outs, inputs=[i.name for i in sess.get_inputs()])
    if os.path.abspath(model) != os.path.abspath(orig):
        r, ta, tb = latency_ratio(model, orig, ids[:8])
        row.update(latency_ratio=r, latency_ms=ta * 1e3, latency_orig_ms=tb * 1e3)
    append(out, row)


def calib_batches(tok, path, batch=16, length=64):
    """The calibration lines, tokenized, truncated to `length`, right-padded (label -100)."""
    import torch
    lines = [l.rstrip("\n") for l in open(path, encoding="utf-8") if l.strip()]
    enc = [tok.encode(l, add_special_tokens=False).ids[:length] for l in lines]
    for i in range(0, len(enc), batch):
        part = enc[i:i + batch]
        w = max(map(len, part))
        ids = torch.zeros(len(part), w, dtype=torch.long)
        mask = torch.zeros(len(part), w, dtype=torch.long)
        labels = torch.full((len(part), w), -100, dtype=torch.long)
        for j, e in enumerate(part):
            ids[j, :len(e)] = torch.tensor(e)
            mask[j, :len(e)] = 1
            labels[j, :len(e)] = torch.tensor(e)
        yield ids, mask, labels


def torch_params(model):
    total = sum(p.numel() for p in model.parameters())  # parameters() lists a tied weight once
    attn = sum(p.numel() for n, p in model.named_parameters() if ATTN_MLP.search(n))
    return total, attn


def torch_ppl(model, ids):
    import torch
    nll = 0.0
    with torch.no_grad():
        for i in range(0, len(ids), 8):
            x = torch.from_numpy(ids[i:i + 8])
            nll += nll_sum(model(input_ids=x).logits.float().numpy(), ids[i:i + 8])
    return nll / (len(ids) * (SEQ - 1))


def _opaque_rope(q, k, cos, sin, position_ids=None, unsqueeze_dim=1):
    """transformers' apply_rotary_pos_emb as one autograd node per tensor."""
    import torch

    class Rope(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, c, s):
            ctx.save_for_backward(c, s)
            h = x.shape[-1] // 2
            return x * c + torch.cat((-x[..., h:], x[..., :h]), -1) * s

        @staticmethod
        def backward(ctx, g):
            c, s = ctx.saved_tensors
            gs = g * s
            h = gs.shape[-1] // 2
            return g * c + torch.cat((gs[..., h:], -gs[..., :h]), -1), None, None

    cos, sin = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    return Rope.apply(q, cos, sin), Rope.apply(k, cos, sin)


def torch_pruning(name, ckpt, out, method):
    import torch
    import transformers
    import torch_pruning as tp
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float32, attn_implementation="eager")
    cfg = model.config
    assert model.lm_head.weight is model.model.embed_tokens.weight or not cfg.tie_word_embeddings
    model.eval()
    ids = np.load(os.path.join(out, "heldout.npy"))
    p0, a0 = torch_params(model)
    info = dict(tied=bool(cfg.tie_word_embeddings))
    t0 = time.perf_counter()
    if method != "dense":
        tok = tokenizer_of(ckpt)
        if method.startswith("taylor"):
            imp = tp.importance.GroupTaylorImportance()
            model.zero_grad()
            n = sum(1 for _ in calib_batches(tok, os.path.join(out, "calib-train.txt")))
            for x, m, y in calib_batches(tok, os.path.join(out, "calib-train.txt")):
                (model(input_ids=x, attention_mask=m, labels=y).loss / n).backward()
        else:
            imp = tp.importance.GroupMagnitudeImportance(p=2, group_reduction="mean")
        # As examples/LLMs/prune_llm.py (num_heads per projection, prune_num_heads, no head
        # dims, GQA: q heads pruned within each kv group, k/v kept), but the hidden size is
        # kept (o_proj/down_proj outputs, embedding and lm_head ignored) so that only heads
        # and MLP channels go, as with ecospac.
        num_heads, ignored = {}, [model.lm_head, model.model.embed_tokens]
        for layer in model.model.layers:
            at = layer.self_attn
            num_heads[at.q_proj] = cfg.num_attention_heads
            num_heads[at.k_proj] = num_heads[at.v_proj] = cfg.num_key_value_heads
            ignored += [at.o_proj, layer.mlp.down_proj]
        # TP's GQA rule: q heads go at head_ratio within each kv group, k/v stay. With
        # 2 q heads per kv head, half the q heads leaves as many q as kv heads, and then
        # TP 1.6.1 (base_pruner._prune) no longer sees GQA, keeps the k/v indices in the
        # group, and its over-pruning check (check_pruning_group: all 128 k_proj/v_proj
        # channels) rejects every attention group: it prunes no heads at all.
        # "l2"/"taylor": TP as released, so MLP channels only; "*-heads": the GQA rule
        # as TP means it (k/v indices cleared, see below), heads and MLP channels.
        # Either way the MLP ratio brings the attention+MLP linear parameters to half.
        heads = method.endswith("-heads")
        head_ratio = 0.5 if heads else 0.0
        h, kv, inter = cfg.hidden_size, cfg.num_key_value_heads, cfg.intermediate_size
        hd = getattr(cfg, "head_dim", None) or h // cfg.num_attention_heads
        q_keep = cfg.num_attention_heads - math.ceil(head_ratio * cfg.num_attention_heads / kv) * kv
        attn_keep = 2 * h * q_keep * hd + 2 * h * kv * hd
        per_layer = 2 * h * cfg.num_attention_heads * hd + 2 * h * kv * hd + 3 * h * inter
        mlp_keep = round((0.5 * per_layer - attn_keep) / (3 * h))
        mlp_ratio = 1 - (mlp_keep + 0.5) / inter  # TP keeps int(inter * (1 - ratio)) = mlp_keep
        example = torch.randint(0, cfg.vocab_size, (1, 16))
        # TP 1.6.1's tracer does not terminate on transformers' RoPE (rotate_half:
        # slices + cat give index mappings that shift by 128 on every trip round
        # the q -> rotate_half -> add -> q cycle). While the graph is traced, RoPE
        # runs as one opaque elementwise op per tensor (same values), which is
        # exact for whole-head pruning (RoPE acts within each head).
        import transformers.models.llama.modeling_llama as llama
        rope_orig = llama.apply_rotary_pos_emb
        llama.apply_rotary_pos_emb = _opaque_rope
        pruner = tp.pruner.MetaPruner(
            model, example_inputs=example, importance=imp, global_pruning=False,
            # transformers 4.57 returns a ModelOutput with a cache object, which
            # TP 1.6.1's tracer cannot walk: trace the logits only.
            forward_fn=lambda m, x: m(input_ids=x, use_cache=False).logits,
            pruning_ratio=mlp_ratio, ignored_layers=ignored, num_heads=num_heads,
            prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=head_ratio)
        llama.apply_rotary_pos_emb = rope_orig
        if heads:
            kv_layers = {m for m, n in num_heads.items() if n == kv}
            check = pruner.DG.check_pruning_group

            def check_gqa(group):
                for i in range(len(group)):
                    dep, _ = group[i]
                    if dep.target.module in kv_layers and pruner.DG.is_out_channel_pruning_fn(dep.handler):
                        group[i] = (dep, [])
                return check(group)
            pruner.DG.check_pruning_group = check_gqa
        for g in pruner.step(interactive=True):
            g.prune()
        # Update the attention modules as prune_llm.py does (GQA branch).
        for layer in model.model.layers:
            at = layer.self_attn
            nh = at.q_proj.out_features // at.head_dim
            nkv = at.k_proj.out_features // at.head_dim
            assert nh % nkv == 0, (nh, nkv)
            at.num_key_value_groups = nh // nkv
            for k in ("num_heads", "num_attention_heads"):
                if hasattr(at, k):
                    setattr(at, k, nh)
        cfg.num_attention_heads = nh
        cfg.intermediate_size = model.model.layers[0].mlp.gate_proj.out_features
        model.zero_grad(set_to_none=True)
        del pruner
        l0 = model.model.layers[0]
        info.update(mlp_ratio=mlp_ratio, q=tuple(l0.self_attn.q_proj.weight.shape), k=tuple(l0.self_attn.k_proj.weight.shape),
                    o=tuple(l0.self_attn.o_proj.weight.shape), gate=tuple(l0.mlp.gate_proj.weight.shape),
                    hidden=model.model.embed_tokens.weight.shape[1],
                    tied_after=model.lm_head.weight is model.model.embed_tokens.weight)
    wall = time.perf_counter() - t0
    model.eval()
    loss = torch_ppl(model, ids)
    p, a = torch_params(model)
    append(out, dict(name=name, engine="pytorch", loss=loss, ppl=math.exp(loss), params=p, attn_mlp=a,
                     params_orig=p0, attn_mlp_orig=a0, wall_s=wall if method != "dense" else None, **info))


def table(out):
    rows = [json.loads(l) for l in open(os.path.join(out, "results.jsonl"))]
    last = {}
    for r in rows:
        last[r["name"]] = r  # a rerun replaces
    base_onnx = last.get("original")
    base_torch = last.get("original (PyTorch)")
    print("| model | engine | params | ratio | attn+MLP params | ratio | held-out loss | held-out ppl | "
          "compile/prune s | ORT latency ratio (1 thread, 8x128) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in last.values():
        base = base_onnx if r["engine"] == "onnxruntime" else base_torch
        base = base or r
        lat = f"{r['latency_ratio']:.2f} ({r['latency_ms']:.0f} / {r['latency_orig_ms']:.0f} ms)" if "latency_ratio" in r else "–"
        wall = f"{r['wall_s']:.1f}" if r.get("wall_s") is not None else "–"
        print(f"| {r['name']} | {r['engine']} | {r['params']:,} | {r['params'] / base['params']:.3f} | "
              f"{r['attn_mlp']:,} | {r['attn_mlp'] / base['attn_mlp']:.3f} | {r['loss']:.3f} | {r['ppl']:.1f} | "
              f"{wall} | {lat} |")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "split":
        split(*args)
    elif cmd == "heldout":
        heldout(args[0], args[1], int(args[2]) if len(args) > 2 else 512)
    elif cmd == "onnx":
        score_onnx(args[0], args[1], args[2], args[3], float(args[4]) if len(args) > 4 else None)
    elif cmd == "tp":
        torch_pruning(*args)
    elif cmd == "table":
        table(args[0])
    else:
        raise SystemExit(__doc__)
