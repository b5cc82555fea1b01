"""The optimised inference engine: a drop-in ``InferenceEngine`` with static shapes and CUDA graphs.

What it changes compared with the portable engine (same model, same numbers up to float rounding):
  * static shapes, fixed at construction: the camera image sizes (``image_sizes``, default the model's
    S x S), the prompt length (``max_prompt_tokens``, right padding + attention mask) and the batch
    sizes (``batch_sizes``; a batch of B runs in the smallest one >= B, padded by repeating its last
    observation, whose result is dropped);
  * preprocessing (Lanczos resize, 0.9 centre crop, normalisation) in torch on the model's device
    (:mod:`gpu_preprocess`); inputs are uint8 HxWx3 numpy arrays or torch tensors. The optional JPEG
    round trip (``processor.jpeg_quality``, on for the official/LIBERO configuration) has no device
    version: it runs on the CPU with PIL before the upload (tensors on the device are copied back for it);
  * the Bridge-Attention blocks call ``F.scaled_dot_product_attention`` (the vision towers and Qwen2
    already use transformers' "sdpa" attention);
  * on CUDA: pre-allocated input/output buffers per batch size, a few warm-up calls on a side stream,
    then the whole forward (preprocess -> vision -> LLM -> policy) captured in one CUDA graph per batch
    size; a call copies its inputs into the buffers and replays the graph. Off CUDA (or with
    ``cuda_graphs=False``) the same buffers are used with a plain call.
  * modules that inference never runs (kept in the model for checkpoint compatibility) are dropped
    (``drop_unused``, default on; see :func:`drop_unused_weights`);
  * optional ``torch.compile`` (``compile=True``, mode "max-autotune-no-cudagraphs"), default off: it has
    not been measured against the graphs alone.

Nothing is captured or compiled after construction. An input outside the built shapes (another image
size, a larger batch, a longer prompt) is handled according to ``on_shape_mismatch``:
  * ``"eager"`` (default): it runs through the same preprocessing and model without the graph (slow
    path, correct results) and a warning is logged once per engine;
  * ``"raise"``: ``ValueError``.
dtype: bf16 on CUDA, fp32 on CPU (from ``InferenceEngine.load``).
"""

from __future__ import annotations

import logging
import threading
from types import SimpleNamespace
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from vla_adapter_ros.model.api import check_instruction_and_proprio
from vla_adapter_ros.model.policy import BridgeAttentionBlock
from vla_adapter_ros.model.processor import jpeg_roundtrip, tokenize_prompt

from .engine import InferenceEngine, resolve_device
from .gpu_preprocess import DevicePreprocessor

log = logging.getLogger(__name__)

DEFAULT_PROMPT_TOKENS = 64  # the chat prompt is ~35 tokens + the instruction; the longest LIBERO ones fit
MISMATCH_MODES = ("eager", "raise")


class SDPABridgeAttentionBlock(BridgeAttentionBlock):
    """``BridgeAttentionBlock`` with one fused ``F.scaled_dot_product_attention`` call.

    The reference scales the raw-token logits by tanh(g): (q . k_r) * tanh(g) == q . (tanh(g) * k_r),
    so the gate is applied to the raw keys and the three sources go through one SDPA (same 1/sqrt(d)
    scale, same single softmax). Parameters and state-dict keys are unchanged.
    """

    def forward(self, x: torch.Tensor, raw: torch.Tensor, adapter: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, (k_s, v_s), (k_a, v_a), (k_r, v_r) = self.project(x, raw, adapter)
        k = torch.cat([k_s, k_a, k_r * torch.tanh(self.gating_factor)], dim=2)
        v = torch.cat([v_s, v_a, v_r], dim=2)
        out = F.scaled_dot_product_attention(q, k, v)
        out = self.o_proj(out.transpose(1, 2).reshape(b, t, c))
        return self.ffn(out + x)


def drop_unused_weights(model: torch.nn.Module) -> int:
    """Replace the modules that inference never runs by ``nn.Identity`` (in place); returns the number of
    parameters freed. They exist so that checkpoints load 1:1: the last block of each vision tower (features
    come from the second-to-last), DINOv2's final norm, SigLIP's final norm and pooling head, and the Pro
    blocks' ``film_gen`` (~80M parameters, ~160 MB in bf16, for the 0.5B model). The model can no longer be
    saved as a checkpoint or trained afterwards."""
    before = sum(p.numel() for p in model.parameters())
    vb = model.vision_backbone
    dino = vb.featurizer
    siglip = getattr(vb.fused_featurizer, "vision_model", vb.fused_featurizer)
    dino.encoder.layer[-1] = torch.nn.Identity()
    siglip.encoder.layers[-1] = torch.nn.Identity()
    for parent, name in ((dino, "layernorm"), (siglip, "post_layernorm"), (siglip, "head")):
        if isinstance(getattr(parent, name, None), torch.nn.Module):
            setattr(parent, name, torch.nn.Identity())
    for blk in model.action_head.model.mlp_resnet_blocks:
        if hasattr(blk, "film_gen"):
            blk.film_gen = torch.nn.Identity()
    return before - sum(p.numel() for p in model.parameters())


def use_sdpa_policy(model: torch.nn.Module) -> None:
    """Switch every Bridge-Attention block of ``model`` to the SDPA forward (in place)."""
    for m in model.modules():
        if type(m) is BridgeAttentionBlock:
            m.__class__ = SDPABridgeAttentionBlock


class FastInferenceEngine(InferenceEngine):
    """``InferenceEngine`` with static shapes, on-device preprocessing and (on CUDA) CUDA graphs.

    Same ``predict(images, instruction, proprio)`` as the portable engine, plus ``predict_batch``
    for several robots at once. ``captures`` counts CUDA graph captures (one per batch size, all at
    construction); ``slow_calls`` counts calls that took the eager slow path.

    Options: ``batch_sizes`` built (and captured) batch sizes; ``image_sizes`` one (H, W) per camera (default
    the model's S x S); ``max_prompt_tokens`` static prompt length (default the config's, else 64);
    ``cuda_graphs`` (default: on CUDA only); ``compile`` torch.compile the forward before capture (default
    off, unmeasured); ``on_shape_mismatch`` "eager" (slow path, warned once) or "raise";
    ``graph_warmup_iters`` eager calls before each capture; ``drop_unused`` see :func:`drop_unused_weights`.
    The engine changes ``policy.model`` in place (SDPA policy blocks, dropped modules): give it its own.
    """

    def __init__(
        self,
        policy,
        model_id: str,
        random_weights: bool = False,
        *,
        batch_sizes: Sequence[int] = (1,),
        image_sizes: Optional[Sequence[Tuple[int, int]]] = None,
        max_prompt_tokens: Optional[int] = None,
        cuda_graphs: Optional[bool] = None,
        compile: bool = False,
        on_shape_mismatch: str = "eager",
        graph_warmup_iters: int = 3,
        drop_unused: bool = True,
    ):
        super().__init__(policy, model_id, random_weights)
        cfg = self.config
        dev = self.policy.device
        self.batch_sizes = tuple(sorted({int(b) for b in batch_sizes}))
        if not self.batch_sizes or self.batch_sizes[0] < 1:
            raise ValueError(f"batch_sizes must be positive integers, got {batch_sizes!r}")
        s = cfg.processor.image_size
        sizes = [(s, s)] * self.num_images if image_sizes is None else [tuple(map(int, hw)) for hw in image_sizes]
        if len(sizes) != self.num_images or any(len(hw) != 2 or min(hw) < 2 for hw in sizes):
            raise ValueError(
                f"image_sizes must give (H, W) for each of the {self.num_images} cameras, got {image_sizes!r}")
        self.image_sizes = sizes
        self.prompt_tokens = int(max_prompt_tokens or cfg.processor.max_prompt_tokens or DEFAULT_PROMPT_TOKENS)
        if on_shape_mismatch not in MISMATCH_MODES:
            raise ValueError(f"on_shape_mismatch must be one of {MISMATCH_MODES}, got {on_shape_mismatch!r}")
        self.on_shape_mismatch = on_shape_mismatch
        if cuda_graphs is None:
            cuda_graphs = dev.type == "cuda"
        if cuda_graphs and dev.type != "cuda":
            raise ValueError("cuda_graphs=True needs the model on a CUDA device")
        self.cuda_graphs = bool(cuda_graphs)
        self.graph_warmup_iters = int(graph_warmup_iters)
        self.captures = 0
        self.slow_calls = 0
        self._warned = False
        self._preprocessors: dict = {}
        self._prompts: dict = {}
        self._pool = None
        self._lock = threading.Lock()
        if drop_unused:
            drop_unused_weights(self.policy.model)
        use_sdpa_policy(self.policy.model)
        for hw in self.image_sizes:  # resampling matrices, before any side stream or capture
            self._preprocessor(hw)
        self._forward = self._forward_eager
        if compile:
            self._forward = torch.compile(self._forward_eager, mode="max-autotune-no-cudagraphs", dynamic=False)
        with torch.inference_mode():  # largest batch first: the smaller graphs reuse its memory pool
            self._static = {b: self._build_static(b) for b in sorted(self.batch_sizes, reverse=True)}

    @classmethod
    def load(
        cls,
        checkpoint=None,
        preset: str = "tiny",
        device: str = "auto",
        seed: int = 0,
        unnorm_key: Optional[str] = None,
        **options,
    ) -> "FastInferenceEngine":
        """Like ``InferenceEngine.load`` (bf16 on CUDA, fp32 on CPU); ``options`` go to the constructor.

        The model is loaded in fp32 on the CPU and the unused modules are dropped before it is moved to the
        device, so they never take device memory (``drop_unused=False`` keeps them)."""
        from vla_adapter_ros.model import VLAAdapterPolicy

        device = resolve_device(device)
        base = InferenceEngine.load(checkpoint=checkpoint, preset=preset, device="cpu", seed=seed,
                                    unnorm_key=unnorm_key)
        p = base.policy
        if options.get("drop_unused", True):
            drop_unused_weights(p.model)
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        policy = VLAAdapterPolicy(p.model, p.normalizer, p.tokenizer, device=device, dtype=dtype)
        return cls(policy, base.model_id, base.random_weights, **options)

    # ------------------------------------------------------------------ the forward pass
    def _preprocessor(self, hw) -> DevicePreprocessor:
        hw = (int(hw[0]), int(hw[1]))
        if hw not in self._preprocessors:
            self._preprocessors[hw] = DevicePreprocessor(self.config.processor, hw, self.policy.device)
        return self._preprocessors[hw]

    def _forward_eager(self, images, ids, mask, proprio) -> torch.Tensor:
        """images: one uint8 (B, H, W, 3) tensor per camera; ids/mask (B, T); proprio (B, P) normalized.
        Returns normalized actions (B, chunk_len, action_dim) in float32."""
        pix = torch.cat([self._preprocessor(im.shape[1:3])(im) for im in images], dim=1)
        return self.policy.model(pix.to(self.policy.dtype), ids, mask, proprio.to(self.policy.dtype)).float()

    # ------------------------------------------------------------------ static buffers and graphs
    def _build_static(self, b: int) -> SimpleNamespace:
        dev = self.policy.device
        ids, mask = self._tokens("warm up the model")
        st = SimpleNamespace(
            batch=b,
            images=[torch.zeros((b, h, w, 3), dtype=torch.uint8, device=dev) for h, w in self.image_sizes],
            ids=torch.from_numpy(np.repeat(ids[None], b, 0)).to(dev),
            mask=torch.from_numpy(np.repeat(mask[None], b, 0)).to(dev),
            proprio=torch.zeros((b, self.proprio_dim), dtype=torch.float32, device=dev),
            graph=None,
            out=None,
        )
        if self.cuda_graphs:
            self._capture(st)
        return st

    def _capture(self, st: SimpleNamespace) -> None:
        args = (st.images, st.ids, st.mask, st.proprio)
        torch.cuda.synchronize()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: lazy init, cuBLAS handles, (compile), allocator
            for _ in range(self.graph_warmup_iters):
                self._forward(*args)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            st.out = self._forward(*args)
        self._pool = graph.pool()
        st.graph = graph
        self.captures += 1

    def _run_static(self, st: SimpleNamespace) -> torch.Tensor:
        if st.graph is not None:
            st.graph.replay()
            return st.out
        return self._forward(st.images, st.ids, st.mask, st.proprio)

    # ------------------------------------------------------------------ inputs
    def _tokens(self, instruction: str, length: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Prompt ids/mask right-padded to ``length`` (default the static prompt length); cached."""
        length = self.prompt_tokens if length is None else length
        key = (instruction, length)
        if key not in self._prompts:
            if len(self._prompts) > 256:
                self._prompts.clear()
            ids, mask = tokenize_prompt(self.policy.tokenizer, instruction, length, self.config.pad_token_id)
            if int(ids.max()) >= self.config.llm.vocab_size:
                raise ValueError("prompt token id outside the model vocabulary")
            self._prompts[key] = (ids, mask)
        return self._prompts[key]

    def _check(self, index: int, observation) -> tuple:
        where = f"observation {index}"
        if not isinstance(observation, (tuple, list)) or len(observation) != 3:
            raise ValueError(f"{where}: expected (images, instruction, proprio)")
        images, instruction, proprio = observation
        if not isinstance(images, (list, tuple)) or len(images) != self.num_images:
            raise ValueError(f"{where}: expected a list of {self.num_images} images (primary first, then wrist)")
        for k, im in enumerate(images):
            if not isinstance(im, (np.ndarray, torch.Tensor)):
                raise ValueError(f"{where}, image {k}: expected a numpy array or torch tensor, got {type(im).__name__}")
            if im.dtype != (torch.uint8 if isinstance(im, torch.Tensor) else np.uint8):
                raise ValueError(f"{where}, image {k}: expected dtype uint8, got {im.dtype}")
            if im.ndim != 3 or im.shape[2] != 3 or im.shape[0] < 2 or im.shape[1] < 2:
                raise ValueError(f"{where}, image {k}: expected shape (H, W, 3), got {tuple(im.shape)}")
        try:
            pr = check_instruction_and_proprio(instruction, proprio, self.proprio_dim)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        quality = self.config.processor.jpeg_quality
        if quality is not None:  # the processor's JPEG round trip (CPU only), before any resize
            images = [jpeg_roundtrip(im.cpu().numpy() if isinstance(im, torch.Tensor) else im, quality)
                      for im in images]
        return list(images), instruction, pr

    def _mismatch(self, observations) -> Optional[str]:
        """Why these observations do not fit the static shapes (None if they do)."""
        if len(observations) > self.batch_sizes[-1]:
            return f"batch of {len(observations)} > largest built batch size {self.batch_sizes[-1]}"
        for images, instruction, _ in observations:
            for k, im in enumerate(images):
                if tuple(im.shape[:2]) != self.image_sizes[k]:
                    return f"image {k} is {tuple(im.shape[:2])}, the engine was built for {self.image_sizes[k]}"
            try:
                self._tokens(instruction)
            except ValueError as exc:
                return str(exc)
        return None

    @staticmethod
    def _stack(images, device) -> torch.Tensor:
        """Stack HxWx3 images: numpy ones on the CPU (one transfer later), tensors on ``device``."""
        if all(isinstance(im, np.ndarray) for im in images):
            return torch.from_numpy(np.stack(images))
        return torch.stack([torch.as_tensor(im).to(device) for im in images])

    # ------------------------------------------------------------------ public API
    def predict(self, images: Sequence, instruction: str, proprio: np.ndarray) -> np.ndarray:
        """(chunk_len, action_dim) un-normalized actions for one observation."""
        return self.predict_batch([(images, instruction, proprio)])[0]

    @torch.inference_mode()
    def predict_batch(self, observations: Sequence[tuple]) -> np.ndarray:
        """(B, chunk_len, action_dim) un-normalized actions for B observations (images, instruction, proprio)."""
        obs = [self._check(i, o) for i, o in enumerate(observations)]
        if not obs:
            raise ValueError("predict_batch needs at least one observation")
        b = len(obs)
        norm = self.policy.normalizer
        proprio = np.stack([norm.normalize_proprio(p) for _, _, p in obs]).astype(np.float32)
        reason = self._mismatch(obs)
        if reason is None:
            st = self._static[min(s for s in self.batch_sizes if s >= b)]
            rows = list(range(b)) + [b - 1] * (st.batch - b)  # pad by repeating the last observation
            prompts = [self._tokens(obs[i][1]) for i in rows]
            with self._lock:  # the buffers are shared: one call at a time
                for k, buf in enumerate(st.images):
                    buf.copy_(self._stack([obs[i][0][k] for i in rows], buf.device))
                st.ids.copy_(torch.from_numpy(np.stack([p[0] for p in prompts])))
                st.mask.copy_(torch.from_numpy(np.stack([p[1] for p in prompts])))
                st.proprio.copy_(torch.from_numpy(proprio[rows]))
                out = self._run_static(st)[:b].clone()
        else:
            out = self._slow_path(obs, proprio, reason)
        actions = self.policy.postprocess(out)
        if not np.all(np.isfinite(actions)):
            raise FloatingPointError("the model produced non-finite actions")
        return actions

    def _slow_path(self, obs, proprio: np.ndarray, reason: str) -> torch.Tensor:
        if self.on_shape_mismatch == "raise":
            raise ValueError(f"input does not match the engine's static shapes: {reason}")
        if not self._warned:
            log.warning("input outside the static shapes (%s): running the eager slow path "
                        "(logged once)", reason)
            self._warned = True
        self.slow_calls += 1
        dev = self.policy.device
        length = max([self.prompt_tokens] + [
            len(tokenize_prompt(self.policy.tokenizer, instruction)[0]) for _, instruction, _ in obs])
        prompts = [self._tokens(instruction, length) for _, instruction, _ in obs]
        ids = torch.from_numpy(np.stack([p[0] for p in prompts])).to(dev)
        mask = torch.from_numpy(np.stack([p[1] for p in prompts])).to(dev)
        outs = []
        for i, (images, _, _) in enumerate(obs):  # one by one: cameras may differ in size between robots
            ims = [self._stack([im], dev).to(dev) for im in images]
            outs.append(self._forward_eager(ims, ids[i : i + 1], mask[i : i + 1],
                                            torch.from_numpy(proprio[i : i + 1]).to(dev)))
        return torch.cat(outs)

    def warmup_image_sizes(self, image_size: Optional[int]) -> list:
        """The built camera sizes (the captured shapes), or ``image_size`` squared."""
        return list(self.image_sizes) if image_size is None else [(image_size, image_size)] * self.num_images
