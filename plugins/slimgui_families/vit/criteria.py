"""The ViT family's own criteria: ``snp-qk``, ``snp-v`` and ``head-attn`` (the manifest's CriterionSpecs).

The SNP paper (Shim et al., "SNP: Structured Neuron-level Pruning to Preserve Attention Scores") does not publish
its scoring formulas (its code only sends the model to a cloud service); what is computed here is SlimGUI's own
reading of it, exactly as written below.  Every measurement is taken on calibration images (``--samples`` of
them, spread over the image folder; the demo's own training digits when no folder is given), with every block's
input taken from the unpruned model, and the masked passes batched.

Notation, per block *l* and head *h*: ``a`` = the block's normalised input (``norm1(x_l)``, N images × T tokens),
``q_h, k_h`` its queries and keys (the model's ``qk_mask`` / ``v_mask`` applied), ``s`` = the model's scaling
(1/√ of the ORIGINAL head size), ``S_h = s·q_h k_hᵀ`` the scores, ``P_h = softmax(S_h)`` the attention maps.
A query/key group *g* (the graph's unit ``block.l.head.h.qk.g``, its ``attrs["dims"]``) adds
``C_g = s·q_h[:, g] k_h[:, g]ᵀ`` to the scores, so removing a set *R* of groups — what ``qk_mask = 0`` does,
and exactly what pruning does — leaves ``S_h − Σ_{g∈R} C_g``.

- ``snp-qk`` (query/key pairs):
  ``KL_h(R) = mean over images and query rows i of Σ_j P_h[i,j]·(log P_h[i,j] − log softmax(S_h − Σ_{g∈R} C_g)[i,j])``
  — KL(original ‖ masked) of the head's attention rows.  Greedy per head: starting from R = ∅, repeatedly add
  the group whose removal gives the smallest ``KL_h(R ∪ {g})`` (all remaining candidates evaluated in one
  batched pass); the group added at step k scores ``c_k = max(KL_h(R_k), c_{k−1})`` (nudged up by 1e-9 relative
  so the order is strict): the cumulative attention change at the point it goes, so the groups go in the
  greedy order and the scores compare across heads and blocks.
- ``snp-v`` (value neurons), the residual of a least-squares fit: ``U_h = P_h v_h`` (the head's value output,
  N·T rows × its value width), ``Z_h = [1, U_h' for every other head h' of the block]``, ``E_h = (I − Π_{Z_h}) U_h``
  (the part of the head's value output the other heads' value outputs and a constant cannot express), and for
  a group *g* with output-projection columns ``W_g``: ``score = ‖E_h[:, g] W_gᵀ‖²_F / (N·T)`` — the mean energy,
  per token, of the group's contribution to the residual stream that is NOT redundant with the other heads
  (what would be left if their output projections were refitted to absorb it).  Groups that other heads
  explain, or that write little, score low.
- ``head-attn`` (heads): ``score_h = ‖B_l(x; h removed) − B_l(x)‖²_F / ‖B_l(x)‖²_F``, the relative change of
  the block's output with the head's ``qk_mask`` and ``v_mask`` zeroed (exactly its removal), all heads of a
  block in one batched pass.

Units a criterion does not measure are scored by one rule, so that ``select_by_budget`` and ``--ratio`` can rank
every unit together (``T`` = the largest finite measured score, 1 when there is none):

- a head it does not measure (``snp-qk``, ``snp-v``): the sum of its measured groups' scores (a head goes when
  all its q/k pairs, or all its value neurons, go: it ranks after each of them);
- a leaf it does not measure (value neurons for ``snp-qk``, q/k pairs for ``snp-v``, both for ``head-attn``, and
  MLP neurons for all three): ``T·(1 + m/m_max)``, m its weight magnitude (Σ|W| of its weight matrices) and
  m_max the largest such m — after every measured unit, in magnitude order among themselves;
- a block: the sum of its heads' and MLP groups' scores (after everything inside it).

So ``--criterion snp-qk --ratio r`` removes q/k pairs first, ``snp-v`` value neurons, ``head-attn`` heads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from slimgui.core.errors import SlimError
from slimgui.core.progress import CancelToken, ProgressFn, check, report

LEAVES = ("qk", "value", "neurons")
CHUNK_BYTES = 256 * 2**20  # what one batched masked pass may hold in attention maps / activations


# -- calibration images and every block's input ------------------------------------------------------------------
def calibration_pixels(model, data: Any) -> torch.Tensor:
    """``data.samples`` images (default 32) spread over the calibration folder (the model's default data when
    ``data`` is None), in the model's input form.  Labels are not needed: a ViTModel backbone works too."""
    from slimgui.core.data import CalibrationData

    from .data import load_batch, preprocess_of, scan_folder, spread

    if data is None:
        path = model.impl.default_data(model) if model.impl is not None else None
        if path is None:
            raise SlimError("this criterion needs calibration images",
                            hint="pass --data FOLDER (images, or one sub-folder of images per class)")
        data = CalibrationData(path)
    spec = data if isinstance(data, CalibrationData) else CalibrationData(str(data))
    folder = scan_folder(spec.path, what="calibration folder")
    picks = [folder.files[i] for i in spread(len(folder.files), spec.samples)]
    x = load_batch([p for p, _ in picks], preprocess_of(model))
    model.extra["calibration_used"] = {
        "data": {"path": str(Path(spec.path)), "samples": len(picks), "samples_requested": spec.samples,
                 "batch_size": spec.batch_size},
        "warnings": [] if len(picks) >= spec.samples else
        [f"calibration used {len(picks)} images, not the {spec.samples} asked for: {spec.path} holds only "
         f"{len(folder.files)}"]}
    return x


def block_inputs(module, x: torch.Tensor, batch: int = 64) -> list[torch.Tensor]:
    """The input of every block (N, T, D) on images ``x``, from one forward pass of the unpruned model."""
    seen: list[list[torch.Tensor]] = [[] for _ in module.blocks]
    hooks = [b.register_forward_pre_hook(lambda _m, args, i=i: seen[i].append(args[0].detach()))
             for i, b in enumerate(module.blocks)]
    try:
        with torch.no_grad():
            for xb in x.split(batch):
                module(pixel_values=xb)
    finally:
        for h in hooks:
            h.remove()
    return [torch.cat(s) for s in seen]


def _chunk(per_image_bytes: int) -> int:
    return max(1, CHUNK_BYTES // max(1, per_image_bytes))


# -- the rule for units a criterion does not measure ---------------------------------------------------------------
def _magnitude(adapter, model, uid: str) -> float:
    mod = adapter.unit_module(model, uid)
    return float(sum(p.detach().abs().sum().item() for p in mod.parameters() if p.dim() >= 2))


def complete(adapter, model, graph, measured: dict[str, float]) -> dict[str, float]:
    """Every prunable unit's score from the measured ones, by the module docstring's rule; leaves first, then heads,
    then blocks (ties rank children first)."""
    finite = [v for v in measured.values() if math.isfinite(v)]
    top = max(finite) if finite and max(finite) > 0 else 1.0
    units = graph.prunable()
    leaves = [u for u in units if u.kind in LEAVES]
    open_leaves = [u for u in leaves if u.id not in measured]
    mags = {u.id: _magnitude(adapter, model, u.id) for u in open_leaves}
    m_max = max(mags.values(), default=0.0) or 1.0
    out: dict[str, float] = {}
    for u in leaves:
        out[u.id] = measured[u.id] if u.id in measured else top * (1.0 + mags[u.id] / m_max)
    for u in units:
        if u.kind == "head":
            out[u.id] = measured[u.id] if u.id in measured else float(sum(
                measured[c.id] for c in graph.children(u.id) if c.id in measured))
    inside: dict[str, list[str]] = {}
    for d in units:
        if d.kind in ("head", "neurons"):
            inside.setdefault(".".join(d.id.split(".")[:2]), []).append(d.id)
    for u in units:
        if u.kind == "block":
            out[u.id] = measured[u.id] if u.id in measured else float(sum(out[d] for d in inside.get(u.id, [])))
    for u in units:  # any other kind a later graph adds: after everything measured
        out.setdefault(u.id, measured.get(u.id, 2.0 * top))
    return out


def _head_of(uid: str) -> tuple[int, int]:
    parts = uid.split(".")
    return int(parts[1]), int(parts[3])


def _groups(graph, kind: str) -> dict[tuple[int, int], list[tuple[str, int, int]]]:
    """Per (block, head): [(unit id, start, end)] of its groups of ``kind`` ("qk" or "value")."""
    out: dict[tuple[int, int], list[tuple[str, int, int]]] = {}
    for u in graph.prunable():
        if u.kind == kind:
            s, e = u.attrs["dims"]
            out.setdefault(_head_of(u.id), []).append((u.id, int(s), int(e)))
    return out


class _ViTCriterion:
    name = ""

    def __init__(self) -> None:
        self.last_info: dict[str, Any] = {}

    def score(self, model, data: Any = None, *, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> dict[str, float]:
        adapter = model.impl
        if adapter is None:
            from slimgui.core.plugins import discover

            adapter = discover().adapter(model.adapter)
        graph = adapter.to_graph(model)
        module = model.module
        was_training = module.training
        module.eval()
        try:
            report(progress, 0, 1, "reading calibration images")
            x = calibration_pixels(model, data)
            check(cancel)
            inputs = block_inputs(module, x)
            with torch.no_grad():
                measured = self.measure(module, graph, inputs, progress, cancel)
        finally:
            module.train(was_training)
        self.last_info = {"images": int(x.shape[0]), "measured_units": len(measured),
                          "formula": self.formula, **self.extra_info(measured)}
        return complete(adapter, model, graph, measured)

    formula = ""

    def measure(self, module, graph, inputs, progress, cancel) -> dict[str, float]:
        raise NotImplementedError

    def extra_info(self, measured: dict[str, float]) -> dict[str, Any]:
        return {}


# -- snp-qk ------------------------------------------------------------------------------------------------------
def _kl_rows(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Σ_j p (log p − log q) per row, summed over every leading dimension but the first (candidates)."""
    return (logp.exp() * (logp - logq)).sum(-1).flatten(1).sum(1)


class SnpQK(_ViTCriterion):
    """snp-qk: per head, the q/k pair groups removed greedily so the remaining pairs preserve the attention maps;
    a group's score is the head's mean KL(original ‖ masked) when it goes (module docstring)."""

    name = "snp-qk"
    formula = ("per head, greedy removal of the q/k group whose removal changes the attention rows least; "
               "score = mean KL(original || masked) of the head's attention rows once the group and those before "
               "it are removed (running max)")

    def measure(self, module, graph, inputs, progress, cancel) -> dict[str, float]:
        heads = _groups(graph, "qk")
        out: dict[str, float] = {}
        self.order: dict[str, list[str]] = {}
        for n, ((li, h), groups) in enumerate(sorted(heads.items())):
            check(cancel)
            attn = module.blocks[li].attn
            a = module.blocks[li].norm1(inputs[li])
            q, k, _ = attn.qkv(a)
            sq = attn.head_slices()[h][0]
            qh, kh = q[..., sq], k[..., sq]
            out.update(self._greedy(qh, kh, attn.scaling, groups, f"block.{li}.head.{h}"))
            report(progress, n + 1, len(heads), f"snp-qk: block {li} head {h}")
        return out

    def _greedy(self, qh, kh, scaling: float, groups, hid: str) -> dict[str, float]:
        n_img, t, _ = qh.shape
        chunk = _chunk(len(groups) * t * t * 4 * 4)
        spans = [(s, e) for _, s, e in groups]
        removed: list[int] = []
        left = list(range(len(groups)))
        scores: dict[str, float] = {}
        prev = 0.0
        order = []
        while left:
            kl = torch.zeros(len(left), dtype=torch.float64)
            for i in range(0, n_img, chunk):
                qc, kc = qh[i:i + chunk], kh[i:i + chunk]
                full = torch.matmul(qc, kc.transpose(-1, -2)) * scaling  # (n, T, T)
                contrib = torch.stack([torch.matmul(qc[..., s:e], kc[..., s:e].transpose(-1, -2)) * scaling
                                       for s, e in spans])  # (G, n, T, T)
                base = full - contrib[removed].sum(0) if removed else full
                cand = base.unsqueeze(0) - contrib[left]  # (|left|, n, T, T)
                logp = torch.log_softmax(full, dim=-1).unsqueeze(0)
                kl += _kl_rows(logp.expand_as(cand), torch.log_softmax(cand, dim=-1)).double()
            kl /= n_img * t
            best = int(torch.argmin(kl))
            g = left.pop(best)
            removed.append(g)
            value = float(kl[best])
            value = max(value, prev * (1 + 1e-9) + 1e-12) if math.isfinite(value) else value
            prev = value if math.isfinite(value) else prev
            scores[groups[g][0]] = value
            order.append(groups[g][0])
        self.order[hid] = order
        return scores

    def extra_info(self, measured):
        return {"greedy_order": getattr(self, "order", {})}


# -- snp-v -------------------------------------------------------------------------------------------------------
class SnpV(_ViTCriterion):
    """snp-v: value-neuron groups by the part of their residual-stream contribution the other heads' value outputs
    cannot express (least-squares residual, module docstring)."""

    name = "snp-v"
    formula = ("||E_g W_g^T||_F^2 / (N*T): E = the head's value output (P_h v_h) minus its least-squares fit on the "
               "other heads' value outputs and a constant, W_g the group's output-projection columns")

    def measure(self, module, graph, inputs, progress, cancel) -> dict[str, float]:
        heads = _groups(graph, "value")
        blocks = sorted({li for li, _ in heads})
        out: dict[str, float] = {}
        for n, li in enumerate(blocks):
            check(cancel)
            attn = module.blocks[li].attn
            a = module.blocks[li].norm1(inputs[li])
            _, _, v = attn.qkv(a)
            probs = attn(a)[1]  # (N, H, T, T)
            slices = attn.head_slices()
            outs = [torch.matmul(probs[:, h], v[..., sv]).flatten(0, 1).double() for h, (_, sv) in enumerate(slices)]
            ones = torch.ones(outs[0].shape[0], 1, dtype=torch.float64)
            w_o = attn.o_proj.weight.double()
            for h, (_, sv) in enumerate(slices):
                if (li, h) not in heads:
                    continue
                z = torch.cat([ones] + [o for j, o in enumerate(outs) if j != h], dim=1)
                basis, sing, _ = torch.linalg.svd(z, full_matrices=False)
                basis = basis[:, sing > sing.max() * 1e-10]
                resid = outs[h] - basis @ (basis.T @ outs[h])  # (N·T, width)
                w_h = w_o[:, sv]
                for uid, s, e in heads[(li, h)]:
                    eg, wg = resid[:, s:e], w_h[:, s:e]
                    out[uid] = float(((eg.T @ eg) * (wg.T @ wg)).sum() / resid.shape[0])
            report(progress, n + 1, len(blocks), f"snp-v: block {li}")
        return out


# -- head-attn ---------------------------------------------------------------------------------------------------
class HeadAttention(_ViTCriterion):
    """head-attn: the relative change of the block's output with the head removed (its q/k and value masks zeroed)."""

    name = "head-attn"
    formula = "||B_l(x; head removed) - B_l(x)||_F^2 / ||B_l(x)||_F^2 over the calibration tokens"

    def measure(self, module, graph, inputs, progress, cancel) -> dict[str, float]:
        heads = [u.id for u in graph.prunable() if u.kind == "head"]
        by_block: dict[int, list[int]] = {}
        for uid in heads:
            li, h = _head_of(uid)
            by_block.setdefault(li, []).append(h)
        out: dict[str, float] = {}
        for n, (li, hs) in enumerate(sorted(by_block.items())):
            check(cancel)
            block = module.blocks[li]
            attn = block.attn
            x = inputs[li]
            n_img, t, d = x.shape
            chunk = _chunk(len(hs) * t * (d * 16 + t * 8))
            before = (attn.qk_mask, attn.v_mask)
            wq, wv = attn.q_proj.out_features, attn.v_proj.out_features
            base_q = attn.qk_mask.reshape(-1) if attn.qk_mask is not None else torch.ones(wq)
            base_v = attn.v_mask.reshape(-1) if attn.v_mask is not None else torch.ones(wv)
            slices = attn.head_slices()
            num = torch.zeros(len(hs), dtype=torch.float64)
            den = 0.0
            try:
                for i in range(0, n_img, chunk):
                    xc = x[i:i + chunk]
                    m = xc.shape[0]
                    attn.qk_mask, attn.v_mask = before
                    ref = block(xc)[0]
                    den += float(ref.double().pow(2).sum())
                    qm = base_q.repeat(len(hs), 1)
                    vm = base_v.repeat(len(hs), 1)
                    for j, h in enumerate(hs):
                        qm[j, slices[h][0]] = 0
                        vm[j, slices[h][1]] = 0
                    attn.qk_mask = qm.repeat_interleave(m, 0).unsqueeze(1)  # (H·m, 1, Wq): one head removed per copy
                    attn.v_mask = vm.repeat_interleave(m, 0).unsqueeze(1)
                    y = block(xc.repeat(len(hs), 1, 1))[0].view(len(hs), m, t, d)
                    num += (y - ref.unsqueeze(0)).double().pow(2).flatten(1).sum(1)
            finally:
                attn.qk_mask, attn.v_mask = before
            for j, h in enumerate(hs):
                out[f"block.{li}.head.{h}"] = float(num[j] / den) if den > 0 else float("nan")
            report(progress, n + 1, len(by_block), f"head-attn: block {li}")
        return out


# -- what the tests and the bench compare -------------------------------------------------------------------------
def attention_kl(original, pruned, x: torch.Tensor, batch: int = 64) -> float:
    """Mean KL(original ‖ pruned) of the attention rows of every head both models keep (matched by
    ``config.block_origin`` / ``head_origin``), over images ``x``: the attention-preservation figure."""
    total, count = 0.0, 0
    with torch.no_grad():
        for xb in x.split(batch):
            a = original.module(pixel_values=xb, output_attentions=True).attentions
            b = pruned.module(pixel_values=xb, output_attentions=True).attentions
            o_cfg, p_cfg = original.config, pruned.config
            for pi, pb in enumerate(p_cfg.block_origin):
                oi = o_cfg.block_origin.index(pb) if pb in o_cfg.block_origin else None
                if oi is None or a[oi] is None or b[pi] is None:
                    continue
                for ph, origin in enumerate(p_cfg.head_origin[pi]):
                    if origin not in o_cfg.head_origin[oi]:
                        continue
                    oh = o_cfg.head_origin[oi].index(origin)
                    p, q = a[oi][:, oh].double().clamp_min(1e-30), b[pi][:, ph].double().clamp_min(1e-30)
                    total += float((p * (p.log() - q.log())).sum())
                    count += p.shape[0] * p.shape[1]
    return total / count if count else float("nan")
