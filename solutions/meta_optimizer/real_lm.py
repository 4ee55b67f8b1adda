"""Reference solutions of the exercises of meta_optimizer/real_lm: exactly the code the chapter shows in its
solution blocks (a test keeps the two identical). Kept outside the installed package, so that a student who
installs the course cannot import them."""

from __future__ import annotations


def demonstration_prompt(texts, labels, label_words, template, separator):
    return "".join(template.format(text=t) + label_words[y] + separator for t, y in zip(texts, labels))


def label_margin(logits, label_ids, y):
    two = logits[:, label_ids]  # (n, 2): the logits of the class-0 and class-1 label tokens
    right = two.gather(1, y[:, None])[:, 0]
    wrong = two.gather(1, (1 - y)[:, None])[:, 0]
    return right - wrong  # > 0 exactly when the prediction is correct


def rec2ftp_counts(zsl_margin, icl_margin, ft_margin):
    fixed_by_ft = (zsl_margin <= 0) & (ft_margin > 0)  # zero-shot wrong, fine-tuning right
    return int(fixed_by_ft.sum()), int((fixed_by_ft & (icl_margin > 0)).sum())


def simam_one_review(icl_scores, other_scores, n_query):
    a = icl_scores[..., -n_query:]  # the query text is the last n_query positions of both prompts
    b = other_scores[..., -n_query:]
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))  # (L, H): one cosine per layer and head
    return cos.mean(-1)  # (L,): mean over heads
