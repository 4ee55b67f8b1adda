"""Choose the fine-tuning learning rate of Part II's real-LM protocol on held-out reviews.

Fine-tunes the key and value projections of SmolLM2-135M-Instruct on demonstration draws the book never reports
(seeds 100 and 101) at each learning rate; on the validation reviews, measures the fine-tuned accuracy and how long
fine-tuning's update of the normalised attention outputs is next to ICL's; chooses the rate whose update is as long
as ICL's (see ``meta_optimizer.choose_lr``). The chosen rate is then recorded by hand in
``icl_course/meta_optimizer/_lm_protocol.py`` (``LMProtocolSettings.lr``) — the chapters never search it. About 5
minutes on one CPU thread.

    python scripts/choose_lm_lr.py
"""

from icl_course import runtime
from icl_course.meta_optimizer import LM_PROTOCOL, choose_lr

if __name__ == "__main__":
    runtime.setup()
    result = choose_lr()
    s = LM_PROTOCOL.cpu
    print(f"k = {s.k} demonstrations, {s.n_val} validation reviews, labels {s.labels}; zero-shot validation "
          f"accuracy {result.zero_shot:.3f}")
    for lr, acc, ratio in zip(result.lrs, result.accuracy, result.update_ratio):
        print(f"lr {lr:8.0e}  fine-tuned validation accuracy {acc:.3f}  update length / ICL's {ratio:.3f}")
    print(f"chosen lr = {result.chosen:g} (recorded: {s.lr:g})")
