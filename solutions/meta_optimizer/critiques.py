"""Reference solutions of the exercises of meta_optimizer/critiques: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations

import torch


def margin_auc(margin, labels):
    pos, neg = margin[labels == 1], margin[labels == 0]
    diff = pos[:, None] - neg[None, :]  # every (positive, negative) pair
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())  # ties count half


def expand_kv_heads(k, n_heads):
    groups = n_heads // k.shape[0]  # query heads per key/value head
    return k.repeat_interleave(groups, dim=0)  # head h reads key/value head h // groups


def softmax_update_cosine(q, k_demo, v_demo, k_text, v_text, scale):
    k_all, v_all = torch.cat([k_demo, k_text]), torch.cat([v_demo, v_text])  # (Td + Tt, d)
    with_demos = torch.softmax(scale * (k_all @ q), 0) @ v_all  # softmax attention over demonstrations and text
    text_only = torch.softmax(scale * (k_text @ q), 0) @ v_text  # the zero-shot prompt's attention
    dw_q = v_demo.T @ (k_demo @ q)  # ΔW_ICL q = Σ_demo v_j (k_j · q)
    change = with_demos - text_only
    return float(change @ dw_q / (change.norm() * dw_q.norm()))


def paired_sem(a, b):
    d = a - b  # one difference per review: the pairing removes what the reviews share
    return float(d.std(correction=1) / len(d) ** 0.5)
