"""Experiment (issue 15): can a model learn to localise the instructed cube from the first frame alone?

Isolates localisation from everything closed-loop: every sample is a fresh seeded layout at the ready pose
(both cameras rendered), the task's instruction, and the scripted expert's first chunk (EEF deltas, as
`diagnose --targeting` plans it). It then
  1. fits a ridge regression from 4x4-pooled pixels (per task) to the chunk's net translation: how much a
     linear read-out of the images already knows (cosine of the horizontal direction, held-out layouts);
  2. trains the tiny VLA-Adapter (`tiny-112` shapes, no proprio) on the same samples and scores its first
     chunks on held-out seeds 1000+ with the targeting rule of vla_adapter_ros/train/targeting.py (the
     rate next to the blind rate), every --eval-every steps (500), and the same on 30 of the training layouts.
Variables: image size, patch size, the agentview camera (position, target, fovy), random-shift
augmentation, number of layouts, steps; and model variants that locate the bottleneck (a conv stem,
coordinate channels, the policy's gate, its training perturbation, C^R without the LLM, conv tokens instead of
the ViT towers) next to a control that is not a VLA-Adapter (--model cnn).

The renders, labels and held-out scenes are cached in --cache-dir (built with MuJoCo on first use, ~3 min for
600 layouts, or with --prepare); training and scoring read only the caches, with the images preprocessed in
torch (vla_adapter_ros/inference/gpu_preprocess.py, bit-identical to the CPU processor at this size), so a
GPU machine without the simulation runs it from a carried copy (--device cuda, bf16 autocast;
scripts/gpu_probe.sh). CPU: 0.4-0.9 s per step of 32 (the CNN control 0.17 s) with two runs on two cores.

    python scripts/first_frame_probe.py --name base --layouts 600 --steps 1000
    python scripts/first_frame_probe.py --name close --shift 4 --cam 1.0,0,0.62,0.45,0,0.1
    python scripts/first_frame_probe.py --name cnn --shift 4 --cam 1.0,0,0.62,0.45,0,0.1 --model cnn
    python scripts/first_frame_probe.py --name cnnvis --shift 4 --cam 1.0,0,0.62,0.45,0,0.1 --vision cnn
    python scripts/first_frame_probe.py --name long --shift 4 --cam 1.0,0,0.62,0.45,0,0.1 --steps 100000 \
        --time-limit 3600   # the cosine schedule fitted to an hour
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import replace

import numpy as np
import torch

p = argparse.ArgumentParser()
p.add_argument("--name", default="", help="run name: results in --cache-dir/NAME/result.json")
p.add_argument("--prepare", action="store_true",
               help="build the caches (MuJoCo) and exit: another machine can then train from a copy of them")
p.add_argument("--size", type=int, default=112)
p.add_argument("--patch", type=int, default=14)
p.add_argument("--layouts", type=int, default=600)
p.add_argument("--steps", type=int, default=1500)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--shift", type=int, default=0, help="random shift pad (pixels at the model resolution)")
p.add_argument("--cam", default="", help="agentview pos,target as x,y,z,x,y,z")
p.add_argument("--fovy", type=float, default=0.0)
p.add_argument("--eval-seeds", type=int, default=30)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--time-limit", type=float, default=0.0,
               help="seconds of training (0: none): every 50 steps --steps is cut to what fits at the recent rate, "
                    "so the cosine schedule still ends at the last step, then scored as usual")
p.add_argument("--eval-every", type=int, default=500)
p.add_argument("--seed", type=int, default=0, help="seed of the model's initialisation and the batch order")
p.add_argument("--device", default="auto", help="auto: cuda when available, else cpu (bf16 autocast on cuda)")
p.add_argument("--cameras", default="agentview,wrist")
p.add_argument("--cache-dir", default="outputs/first_frame_probe")
p.add_argument("--stem", choices=["patch", "conv"], default="patch",
               help="patch: the towers' linear patch embedding; conv: two 3x3 convolutions (stride 2, then 1) first")
p.add_argument("--coords", action="store_true",
               help="append x, y coordinate channels (-1..1) to the pixels the patch embedding sees (CoordConv)")
p.add_argument("--model", choices=["vla", "cnn"], default="vla",
               help="vla: the tiny VLA-Adapter; cnn: a control, a 3-layer CNN over both images + a task embedding")
p.add_argument("--gate-init", type=float, default=0.0,
               help="initial gating factor of the policy's raw-token attention (the release: 0, tanh(0) = 0)")
p.add_argument("--raw-source", choices=["llm", "vision"], default="llm",
               help="the policy's raw tokens C^R: the LLM's hidden states at the image positions (the release), or "
                    "the projected vision tokens themselves (the LLM bypassed for C^R; C^AQ unchanged)")
p.add_argument("--vision", choices=["vit", "cnn"], default="vit",
               help="vit: the DINOv2 + SigLIP towers; cnn: the control's conv layers (+ coordinates) as the patch "
                    "tokens, the LLM and the policy unchanged")
p.add_argument("--policy-heads", type=int, default=0, help="attention heads of the policy (0: the preset's 8)")
p.add_argument("--llm-width", type=int, default=0,
               help="hidden size of the LLM, and so of the policy (0: the preset's 64; MLP 2x, 4 heads, 2 KV heads)")
p.add_argument("--train-noise", type=float, default=None,
               help="std of the training perturbation of the policy's zero latent (default: the preset's; "
                    "tiny-112: 0; the release: 0.02; every run before 2026-12-02 had 0.02)")
p.add_argument("--vision-width", type=int, default=0, help="width of both vision towers (0: the preset's)")
p.add_argument("--vision-layers", type=int, default=0, help="blocks used per vision tower (0: the preset's)")
a = p.parse_args()
if not a.name and not a.prepare:
    p.error("--name is required (or --prepare)")
torch.set_num_threads(a.threads)
device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device)
out_dir = os.path.join(a.cache_dir, a.name)
os.makedirs(a.cache_dir if a.prepare else out_dir, exist_ok=True)

from vla_adapter_ros.model.config import get_config  # noqa: E402
from vla_adapter_ros.inference.gpu_preprocess import DevicePreprocessor  # noqa: E402
from vla_adapter_ros.model.processor import QwenTokenizer, collate, tokenize_prompt  # noqa: E402
from vla_adapter_ros.model.vla import VLAAdapter  # noqa: E402
from vla_adapter_ros.train.targeting import _score  # noqa: E402

cams = a.cameras.split(",")
# the expert's first chunks depend on the layouts only (seeds 0.., every task); images on the camera too
view = (a.cam.replace(",", "_") if a.cam else "default") + (f"_fovy{a.fovy:g}" if a.fovy else "")
labels_file = os.path.join(a.cache_dir, f"labels_{a.layouts}.npz")
images_file = os.path.join(a.cache_dir, f"images_{a.layouts}_{a.size}_{view}_{'+'.join(cams)}.npz")
eval_file = os.path.join(a.cache_dir, f"eval_{a.eval_seeds}_{a.size}_{view}_{'+'.join(cams)}.npz")


def build_caches():
    """Render and label everything the run needs (MuJoCo; ~2 min for 600 layouts). Training and scoring then
    read the caches alone, so a machine without the simulation (the GPU machine) can run from a carried copy."""
    from vla_adapter_ros.control.limits import load_robot_limits
    from vla_adapter_ros.sim import scene
    from vla_adapter_ros.sim.env import FrankaSimEnv
    from vla_adapter_ros.sim.tasks import TASKS
    from vla_adapter_ros.train.targeting import blind_direction, expert_first_chunk

    if a.cam:
        v = [float(x) for x in a.cam.split(",")]
        scene.AGENTVIEW_POS, scene.AGENTVIEW_TARGET = tuple(v[:3]), tuple(v[3:])
    if a.fovy:
        scene.AGENTVIEW_FOVY_DEG = a.fovy
    env = FrankaSimEnv(offscreen_max=(640, 480))
    tasks = list(TASKS.values())

    def observe(task, seed):
        task.reset(env, seed, 0.0)
        return np.stack([env.render(c, a.size, a.size) for c in cams])

    t0 = time.time()
    if not os.path.exists(labels_file):
        limits = load_robot_limits("fr3_sim")
        acts, tidx = [], []
        for seed in range(a.layouts):
            for ti, task in enumerate(tasks):
                task.reset(env, seed, 0.0)
                acts.append(expert_first_chunk(env, task, 8, 0.1, limits))
                tidx.append(ti)
            if seed % 100 == 0:
                print(f"expert chunks: layout {seed}/{a.layouts} {time.time() - t0:.0f}s", flush=True)
        np.savez(labels_file, acts=np.stack(acts).astype(np.float32), tidx=np.array(tidx))
    if not os.path.exists(images_file):
        tidx = np.load(labels_file)["tidx"]
        np.savez_compressed(images_file,
                            images=np.stack([observe(tasks[ti], k // len(tasks)) for k, ti in enumerate(tidx)]))
    if not os.path.exists(eval_file):
        ev = {"names": np.array([t.name for t in tasks]), "instructions": np.array([t.instruction for t in tasks]),
              "targets": np.array([t.target for t in tasks]), "cube_names": np.array(env.cubes),
              "blind": np.stack([blind_direction(env, t) for t in tasks])}
        for split, first in (("heldout", 1000), ("train", 0)):  # held-out seeds; layouts the model trains on
            imgs, cubes, tool = [], [], []
            for task in tasks:
                for seed in range(first, first + a.eval_seeds):
                    imgs.append(observe(task, seed))
                    cubes.append([env.cube_pose(c)[0] for c in env.cubes])
                    tool.append(env.eef_pose().position.copy())
            shape = (len(tasks), a.eval_seeds)
            ev[f"{split}_images"] = np.stack(imgs).reshape(*shape, *imgs[0].shape)
            ev[f"{split}_cubes"] = np.array(cubes).reshape(*shape, len(env.cubes), 3)
            ev[f"{split}_tool"] = np.array(tool).reshape(*shape, 3)
        np.savez_compressed(eval_file, **ev)
    print(f"caches built in {time.time() - t0:.0f}s", flush=True)


t0 = time.time()
if not all(os.path.exists(f) for f in (labels_file, images_file, eval_file)):
    build_caches()
if a.prepare:
    print(f"caches: {labels_file} {images_file} {eval_file}", flush=True)
    raise SystemExit(0)
z = np.load(labels_file)
ACTS, TIDX = z["acts"], z["tidx"]
IMGS = np.load(images_file)["images"]
EVAL = dict(np.load(eval_file))
TASK_NAMES = [str(x) for x in EVAL["names"]]
INSTRUCTIONS = [str(x) for x in EVAL["instructions"]]
n = a.layouts * len(TASK_NAMES)
IMGS, ACTS, TIDX = IMGS[:n], ACTS[:n], TIDX[:n]
print(f"data: {IMGS.shape} in {time.time() - t0:.0f}s; device {device}", flush=True)

# 1. linear read-out: ridge regression from 4x4-pooled pixels of both cameras (per task) to the net translation
net = ACTS[:, :, :3].sum(1)
pooled = IMGS.reshape(n, IMGS.shape[1], a.size // 4, 4, a.size // 4, 4, 3).mean((3, 5)).reshape(n, -1) / 255.0
onehot = np.eye(len(TASK_NAMES))[TIDX]
feat = np.concatenate([pooled * onehot[:, [k]] for k in range(len(TASK_NAMES))] + [onehot], 1)
fit = np.arange(n) < int(0.83 * n)
w = np.linalg.solve(feat[fit].T @ feat[fit] + 0.1 * np.eye(feat.shape[1]), feat[fit].T @ net[fit])
pred_xy, true_xy = (feat[~fit] @ w)[:, :2], net[~fit][:, :2]
task_mean = np.stack([net[fit & (TIDX == k)].mean(0) for k in range(len(TASK_NAMES))])[TIDX[~fit]][:, :2]


def _cos(u, v):
    return float(np.mean((u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)))


ridge = {"ridge_xy_cos": _cos(pred_xy, true_xy), "task_mean_xy_cos": _cos(task_mean, true_xy)}
print(f"linear read-out on held-out layouts: {ridge}", flush=True)

mu, sd = ACTS.reshape(-1, 6).mean(0), ACTS.reshape(-1, 6).std(0) + 1e-6
cfg = get_config("tiny-112")
cfg = replace(cfg, processor=replace(cfg.processor, image_size=a.size))
if a.patch != cfg.dino.patch_size:
    cfg = replace(cfg, dino=replace(cfg.dino, patch_size=a.patch), siglip=replace(cfg.siglip, patch_size=a.patch))
if a.vision_width:
    w = a.vision_width
    cfg = replace(cfg, dino=replace(cfg.dino, hidden_size=w, num_heads=4),
                  siglip=replace(cfg.siglip, hidden_size=w, num_heads=4, intermediate_size=2 * w))
if a.vision_layers:  # the last block of each tower is kept but not run (like the release)
    cfg = replace(cfg, dino=replace(cfg.dino, num_layers=a.vision_layers + 1),
                  siglip=replace(cfg.siglip, num_layers=a.vision_layers + 1))
if a.policy_heads:
    cfg = replace(cfg, policy=replace(cfg.policy, num_heads=a.policy_heads))
if a.llm_width:
    cfg = replace(cfg, llm=replace(cfg.llm, hidden_size=a.llm_width, intermediate_size=2 * a.llm_width))
if a.train_noise is not None:
    cfg = replace(cfg, policy=replace(cfg.policy, train_noise_std=a.train_noise))
cfg = cfg.replace_platform(action_dim=6, proprio_dim=8, num_images=len(cams), use_proprio=False, chunk_len=8,
                           gripper_index=-1)
cfg = cfg.validate()
torch.manual_seed(a.seed)
model = VLAAdapter(cfg)


def conv_trunk(channels: int, width: int) -> torch.nn.Sequential:
    """The conv layers of the control and of --vision cnn: 5x5/2 -> 3x3/2 -> 3x3/2, GELU after each (stride 8)."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(channels, 32, 5, 2, 2), torch.nn.GELU(), torch.nn.Conv2d(32, 32, 3, 2, 1), torch.nn.GELU(),
        torch.nn.Conv2d(32, width, 3, 2, 1), torch.nn.GELU())


class ConvStem(torch.nn.Module):
    """Local colour/edge features before patchifying: 3x3/2 -> GELU -> 3x3 -> GELU -> (p/2)x(p/2) patches."""

    def __init__(self, dim: int, patch: int, channels: int = 3):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(channels, 16, 3, 2, 1), torch.nn.GELU(), torch.nn.Conv2d(16, 32, 3, 1, 1),
            torch.nn.GELU(), torch.nn.Conv2d(32, dim, patch // 2, patch // 2))

    @property
    def weight(self):  # the towers read the dtype from their patch embedding's weight
        return self.net[-1].weight

    def forward(self, x):
        return self.net(x)


class WithCoords(torch.nn.Module):
    """Pixels + two coordinate channels (x, y in -1..1, the scale of normalised pixels) into a 5-channel stem."""

    def __init__(self, stem: torch.nn.Module):
        super().__init__()
        self.stem = stem

    @property
    def weight(self):
        return self.stem.weight

    def forward(self, x):
        n, _, h, w = x.shape
        yy, xx = torch.meshgrid(torch.linspace(-1, 1, h, dtype=x.dtype), torch.linspace(-1, 1, w, dtype=x.dtype),
                                indexing="ij")
        return self.stem(torch.cat([x, xx.expand(n, 1, h, w), yy.expand(n, 1, h, w)], 1))


def make_stem(dim: int) -> torch.nn.Module:
    ch = 5 if a.coords else 3
    stem = ConvStem(dim, a.patch, ch) if a.stem == "conv" else torch.nn.Conv2d(ch, dim, a.patch, a.patch)
    return WithCoords(stem) if a.coords else stem


class CNNTokens(torch.nn.Module):
    """Patch tokens from conv_trunk: per image (DINO-normalised RGB + x, y) -> average-pooled to the towers'
    patch grid -> 1x1 conv to the towers' width; images concatenated."""

    def __init__(self, grid: int, dim: int):
        super().__init__()
        self.grid = grid
        self.coords = WithCoords(conv_trunk(5, 32))
        self.out = torch.nn.Conv2d(32, dim, 1)

    def forward(self, pixel_values):
        b, c, h, w = pixel_values.shape
        imgs = pixel_values.reshape(b * (c // 6), 6, h, w)[:, :3]
        f = self.out(torch.nn.functional.adaptive_avg_pool2d(self.coords(imgs), self.grid))
        return f.flatten(2).transpose(1, 2).reshape(b, -1, f.shape[1])


class CNNControl(torch.nn.Module):
    """Control model: can plain SGD on these samples learn the read-out at all? conv_trunk over both images'
    channels, flattened (the layout kept, not pooled); the task comes from the instruction's token ids (one
    learned vector per task)."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(conv_trunk(3 * len(cams), 16), torch.nn.Flatten(),
                                       torch.nn.Linear(16 * math.ceil(a.size / 8) ** 2, 128))
        self.task = torch.nn.Embedding(len(TASK_NAMES), 128)
        self.head = torch.nn.Sequential(torch.nn.GELU(), torch.nn.Linear(128, 8 * 6))
        self.keys = {int((torch.as_tensor(i) * torch.as_tensor(m)).sum()): k
                     for k, (i, m) in enumerate(TOK[t] for t in INSTRUCTIONS)}
        assert len(self.keys) == len(TASK_NAMES)

    def forward(self, pixel_values, input_ids, attention_mask, proprio):
        dino = torch.cat([pixel_values[:, 6 * k:6 * k + 3] for k in range(len(cams))], 1)
        t = torch.tensor([self.keys[int(v)] for v in (input_ids * attention_mask).sum(1)], device=input_ids.device)
        return self.head(self.net(dino) * (1 + self.task(t))).reshape(-1, 8, 6)


tok = QwenTokenizer.load(None)
TOK = {t: tokenize_prompt(tok, t, cfg.processor.max_prompt_tokens, cfg.pad_token_id) for t in INSTRUCTIONS}

# the model variants, applied in this order (the order of their random initialisation)
assert a.stem == "patch" or a.patch % 2 == 0, "--stem conv needs an even --patch"
if a.stem == "conv" or a.coords:
    model.vision_backbone.featurizer.embeddings.patch_embeddings.projection = make_stem(cfg.dino.hidden_size)
    sv = model.vision_backbone.fused_featurizer
    sv = getattr(sv, "vision_model", sv)
    sv.embeddings.patch_embedding = make_stem(cfg.siglip.hidden_size)
if a.gate_init:
    with torch.no_grad():
        for block in model.action_head.modules():
            if hasattr(block, "gating_factor"):
                block.gating_factor.fill_(a.gate_init)
if a.vision == "cnn":
    model.vision_backbone = CNNTokens(a.size // a.patch, cfg.vision_dim)
if a.raw_source == "vision":
    llm_features, projected = model.backbone_features, {}
    # the projected vision tokens of this forward pass, as the LLM's input was built from them
    model.projector.register_forward_hook(lambda module, args, out: projected.__setitem__("tokens", out))

    def vision_raw_features(pixel_values, input_ids, attention_mask=None):
        raw, aq = llm_features(pixel_values, input_ids, attention_mask)
        return projected["tokens"].unsqueeze(1).expand(-1, raw.shape[1], -1, -1), aq

    model.backbone_features = vision_raw_features
if a.model == "cnn":
    model = CNNControl()
else:
    model.language_model.model.embed_tokens.weight.requires_grad_(False)
model = model.to(device)
params = [q for q in model.parameters() if q.requires_grad]
opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.01)
sched = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: min(1.0, (s + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, a.steps) / a.steps))))
print(f"model: {sum(q.numel() for q in params):,} trained params, patches/img {(a.size // a.patch) ** 2}", flush=True)

proc = cfg.processor
rng = np.random.default_rng(a.seed)
prep = DevicePreprocessor(proc, (a.size, a.size), device)  # bit-identical to preprocess_images at this size
IMGS_T = torch.from_numpy(IMGS).to(device)  # (n, cameras, S, S, 3) uint8
prompts = collate([{"input_ids": TOK[t][0], "attention_mask": TOK[t][1]} for t in INSTRUCTIONS], cfg.pad_token_id)
# one right-padded prompt per task (the ActionQuery features come before the padding: the LLM is causal)
IDS, MASK = (torch.from_numpy(prompts[k]).to(device) for k in ("input_ids", "attention_mask"))
ACTS_N = torch.from_numpy(((ACTS - mu) / sd).astype(np.float32)).to(device)
TIDX_T = torch.from_numpy(TIDX).to(device)


def pixels(imgs, aug):
    """uint8 (B, cameras, S, S, 3) -> model input (B, 6 * cameras, S, S); with aug, each image shifted by up to
    --shift pixels with its edge pixels repeated (pad and crop)."""
    b, c, h, w, _ = imgs.shape
    if aug and a.shift > 0:
        d = torch.from_numpy(np.stack([rng.integers(0, 2 * a.shift + 1, 2) for _ in range(b * c)]) - a.shift)
        d = d.to(device).reshape(b, c, 2)
        rows = (torch.arange(h, device=device) + d[..., :1]).clamp(0, h - 1)  # (B, C, H)
        cols = (torch.arange(w, device=device) + d[..., 1:]).clamp(0, w - 1)  # (B, C, W)
        bi = torch.arange(b, device=device)[:, None, None, None]
        ci = torch.arange(c, device=device)[None, :, None, None]
        imgs = imgs[bi, ci, rows[..., :, None], cols[..., None, :]]
    return prep(imgs.reshape(b * c, h, w, 3)).reshape(b, c * 6, h, w)


def make_batch(idx, aug):
    idx = torch.from_numpy(idx).to(device)
    t = TIDX_T[idx]
    return {"pixel_values": pixels(IMGS_T[idx], aug), "input_ids": IDS[t], "attention_mask": MASK[t],
            "proprio": torch.zeros(len(idx), 8, device=device), "actions": ACTS_N[idx]}


def predict(b):
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        return model(b["pixel_values"], b["input_ids"], b["attention_mask"], b["proprio"]).float()


def evaluate(split):
    """Per task: (how often the first chunk heads for the instructed cube, the blind direction's rate) on the
    cached scenes of `split` (held-out seeds 1000.. or the first training layouts), scored like diagnose."""
    model.eval()
    res = {}
    cube_names = [str(c) for c in EVAL["cube_names"]]
    with torch.no_grad():
        for ti, name in enumerate(TASK_NAMES):
            target, blind = str(EVAL["targets"][ti]), EVAL["blind"][ti]
            imgs = torch.from_numpy(EVAL[f"{split}_images"][ti]).to(device)
            k = len(imgs)
            pred = predict({"pixel_values": pixels(imgs, False), "input_ids": IDS[ti].expand(k, -1),
                            "attention_mask": MASK[ti].expand(k, -1), "proprio": torch.zeros(k, 8, device=device)})
            arm = pred.cpu().numpy() * sd + mu
            hits, bl = 0, 0
            for k, ptool in enumerate(EVAL[f"{split}_tool"][ti]):
                cubes = dict(zip(cube_names, EVAL[f"{split}_cubes"][ti, k]))
                hits += _score(arm[k, :, :3].sum(0), ptool, cubes, target)["heads_for"] == target
                bl += _score(blind, ptool, cubes, target)["heads_for"] == target
            res[name] = (hits / a.eval_seeds, bl / a.eval_seeds)
    model.train()
    return res


t0 = t_rate = time.time()
log = []
step = 0
steps_max = a.steps
while step < a.steps:
    step += 1
    idx = rng.integers(0, n, a.batch)
    b = make_batch(idx, True)
    loss = (predict(b) - b["actions"]).abs().mean()
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    sched.step()
    if a.time_limit > 0 and step % 50 == 0:
        # from the rate of the last 50 steps (other jobs come and go); scoring the 2 x 3 x eval-seeds scenes
        # every --eval-every steps costs about 5 training steps
        now = time.time()
        fits = step + int((a.time_limit - (now - t0)) / ((now - t_rate) / 50) / (1 + 5 / a.eval_every))
        t_rate = now
        a.steps = max(min(fits, steps_max), step)
        if step == 50:
            print(f"--time-limit {a.time_limit:g}s: about {a.steps} steps fit (re-fitted every 50)", flush=True)
    if step % 100 == 0:
        print(f"step {step} loss {loss.item():.4f} {time.time() - t0:.0f}s", flush=True)
    if step % a.eval_every == 0 or step == a.steps:
        ev = evaluate("heldout")
        avg = float(np.mean([v[0] for v in ev.values()]))
        fit_ev = evaluate("train")  # layouts the model trained on: cannot fit, or does not generalise?
        fit_avg = float(np.mean([v[0] for v in fit_ev.values()]))
        print(f"step {step} targeting {json.dumps(ev)} avg {avg:.3f}; on training layouts avg {fit_avg:.3f}",
              flush=True)
        log.append({"step": step, "loss": loss.item(), "targeting": ev, "avg": avg, "train_targeting": fit_ev,
                    "train_avg": fit_avg, "time": time.time() - t0})
        json.dump({"args": vars(a), "ridge": ridge, "log": log}, open(f"{out_dir}/result.json", "w"), indent=1)
print("done", flush=True)
