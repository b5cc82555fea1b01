"""Fine-tuning core on the tiny preset (CPU): overfit, trainable set, checkpoints, exact resume."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from vla_adapter_ros.data.convert import ConvertConfig, ConvertError, convert, load_dataset
from vla_adapter_ros.data.synthetic import Q_HOME, write_synthetic_bag
from vla_adapter_ros.train.finetune import (
    BatchBuilder,
    MicroBatches,
    TrainError,
    Trainer,
    TrainConfig,
    add_arguments,
    config_from_args,
    lr_factor,
    run,
    split_episodes,
)

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("train_data")
    dirs = np.array([1.0, -1.0, 1.0, 1.0, -1.0, 1.0, 1.0])
    bags = [write_synthetic_bag(root / "bags", f"ep{i}", n_frames=10,
                                q_of_frame=lambda x, i=i: Q_HOME + 0.02 * (i + 1) * x * dirs,
                                instruction=["pick up the cube", "open the drawer"][i % 2]) for i in range(3)]
    out = root / "ds"
    convert(bags, out, ConvertConfig(action_space="joint_delta", proprio_layout="joints_fingers", image_size=None))
    return out


def _cfg(dataset, out, **kw):
    base = dict(dataset=str(dataset), output_dir=str(out), base="tiny", max_steps=4, batch_size=2, lr=1e-3,
                warmup_steps=0, lora_rank=4, val_every=1000, save_every=1000, log_every=1, num_workers=0,
                progress=False, val_fraction=0.0, seed=0, image_aug=False)
    base.update(kw)
    return TrainConfig(**base)


def test_schedule():
    c = TrainConfig(dataset="d", output_dir="o", max_steps=110, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    f = [lr_factor(s, c) for s in range(110)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)  # linear warm-up
    assert f[10] == pytest.approx(1.0) and f[60] == pytest.approx(0.55)  # cosine midpoint
    assert f[109] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 99 / 100)))
    assert all(a >= b - 1e-12 for a, b in zip(f[10:], f[11:]))
    c.schedule = "constant"
    assert lr_factor(50, c) == 1.0
    assert TrainConfig(dataset="d", output_dir="o", max_steps=1000).warmup == 30


def test_splits_and_batches_deterministic(dataset):
    ds = load_dataset(dataset, chunk_len=8)
    tr, va = split_episodes(ds.frames.episode_index, 0.34, 0)
    assert len(set(ds.frames.episode_index[va])) == 1 and len(tr) + len(va) == len(ds)
    assert not set(ds.frames.episode_index[tr]) & set(ds.frames.episode_index[va])
    mb = MicroBatches(ds, tr, 4, builder=None, seed=3)
    first_epoch = [i for m in range(len(tr) // 4) for i in mb.indices_of(m)]
    assert len(set(first_epoch)) == len(first_epoch)  # no repeats within an epoch
    assert MicroBatches(ds, tr, 4, None, 3).indices_of(5) == mb.indices_of(5)
    r0 = MicroBatches(ds, tr, 2, None, 3, rank=0, world=2)
    r1 = MicroBatches(ds, tr, 2, None, 3, rank=1, world=2)
    assert r0.indices_of(0) + r1.indices_of(0) == mb.indices_of(0)  # ranks shard the same stream


def test_trainable_set_and_gradients(dataset, tmp_path):
    tr = Trainer(_cfg(dataset, tmp_path / "run"))
    names = {n for n, _ in tr.params}
    assert names and all(".lora_" in n or n.startswith(("action_queries.", "proprio_projector.", "action_head."))
                         for n in names)
    assert any(".lora_" in n and n.startswith("vision_backbone.") for n in names)
    assert any(".lora_" in n and n.startswith("language_model.") for n in names)
    assert any(n.startswith("action_head.") for n in names) and "action_queries.weight" in names
    frozen_before = {n: p.detach().clone() for n, p in tr.model.named_parameters() if not p.requires_grad}
    tr.optimizer.zero_grad()
    loss = tr._forward_loss(tr.model, tr.train_batches[0])
    loss.backward()
    # the last DINOv2/SigLIP blocks are unused (features come from the second-to-last block), so their
    # LoRA weights get no gradient; every other trainable tensor does, and no frozen tensor does
    unused = ("vision_backbone.featurizer.encoder.layer.1.", "vision_backbone.fused_featurizer.encoder.layers.2.",
              "vision_backbone.fused_featurizer.post_layernorm", "vision_backbone.fused_featurizer.head.")
    for n, p in tr.model.named_parameters():
        if p.requires_grad and not n.startswith(unused) and ".film_gen." not in n:
            assert p.grad is not None, n
        elif not p.requires_grad:
            assert p.grad is None, n
    assert float(tr.model.action_head.model.fc1.weight.grad.abs().sum()) > 0
    tr.optimizer.zero_grad()
    tr.train_step([tr.train_batches[1]])
    for n, p in tr.model.named_parameters():
        if n in frozen_before:
            assert torch.equal(p, frozen_before[n]), n  # frozen weights untouched by AdamW weight decay


def test_overfit_checkpoint_and_policy(dataset, tmp_path):
    import time

    out = tmp_path / "run"
    tr = Trainer(_cfg(dataset, out, max_steps=25, batch_size=4, lr=2e-3, val_fraction=0.34, val_every=25,
                      save_every=10))
    fixed = tr.train_batches[0]
    before = float(tr._forward_loss(tr.model, fixed).detach())
    t0 = time.time()
    summary = tr.fit()
    per_step = (time.time() - t0) / 25
    after = float(tr._forward_loss(tr.model.eval(), fixed).detach())
    print(f"\ntiny train step (batch 4, CPU): {per_step:.3f} s; L1 on a fixed batch {before:.4f} -> {after:.4f}; "
          f"first/last 5 steps {np.mean(summary['losses'][:5]):.4f} -> {np.mean(summary['losses'][-5:]):.4f}; "
          f"val L1 {summary['val_l1']}")
    assert after < 0.7 * before
    assert np.mean(summary["losses"][-5:]) < 0.7 * np.mean(summary["losses"][:5])
    assert summary["val_l1"] is not None and math.isfinite(summary["val_l1"])
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("val_l1" in x for x in lines) and lines[-1]["step"] == 25
    # final checkpoint (LoRA merged) loads with the policy API and predicts what the trainer predicts
    from vla_adapter_ros.model.api import VLAAdapterPolicy

    final = out / "final"
    assert not (final / "lora_adapter").exists()
    pol = VLAAdapterPolicy.from_checkpoint(final)
    assert pol.config.platform.action_dim == 8 and pol.config.platform.proprio_dim == 9
    ds = load_dataset(dataset, chunk_len=8)
    it = ds[3]
    pred = pol.predict(it["images"], it["instruction"], it["proprio"])
    assert pred.shape == (8, 8) and np.all(np.isfinite(pred))
    batch = tr.builder.batch([it])
    with torch.no_grad():
        ref = tr.model.eval()(batch["pixel_values"], batch["input_ids"], batch["attention_mask"], batch["proprio"])
    np.testing.assert_allclose(pred, pol.postprocess(ref[0]), atol=1e-4)
    meta = json.loads((final / "training.json").read_text())
    assert meta["action_space"] == "joint_delta" and meta["step"] == 25
    # an interval checkpoint (LoRA as adapter) also loads directly
    step10 = out / "checkpoints" / "step_000010"
    assert (step10 / "lora_adapter").is_dir() and (step10 / "train_state.pt").is_file()
    prediction = VLAAdapterPolicy.from_checkpoint(step10).predict(it["images"], it["instruction"], it["proprio"])
    assert prediction.shape == (8, 8)


def test_augmentation():
    from vla_adapter_ros.train.finetune import augment_image

    img = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    a = augment_image(img, np.random.default_rng(1))
    b = augment_image(img, np.random.default_rng(1))
    c = augment_image(img, np.random.default_rng(2))
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    flat = np.full((224, 224, 3), 128, np.uint8)
    z = augment_image(flat, np.random.default_rng(0), brightness=0, contrast=(1, 1), saturation=(1, 1), hue=0)
    assert np.abs(z.astype(int) - 128).max() <= 1  # crop + resize of a flat image stays flat


def test_shift_augmentation_moves_pixels_and_keeps_colours():
    from vla_adapter_ros.train.finetune import shift_image

    img = np.zeros((16, 16, 3), np.uint8)
    img[:, :, 0] = np.arange(16, dtype=np.uint8)[None, :] * 10  # red grows to the right
    img[:, :, 1] = np.arange(16, dtype=np.uint8)[:, None] * 10  # green grows downwards
    img[5, 7] = (255, 0, 255)  # one marker pixel
    seen = set()
    for seed in range(200):
        out = shift_image(img, np.random.default_rng(seed), 3)
        assert out.shape == img.shape and out.dtype == np.uint8
        ys, xs = np.nonzero((out == (255, 0, 255)).all(axis=2))
        assert len(ys) == 1  # the marker moved as a whole, not blurred
        dy, dx = int(ys[0]) - 5, int(xs[0]) - 7
        assert -3 <= dy <= 3 and -3 <= dx <= 3
        seen.add((dy, dx))
        # every pixel is a copy of an input pixel at (row - dy, col - dx), edges repeated: no colour changes
        rows = np.clip(np.arange(16) - dy, 0, 15)
        cols = np.clip(np.arange(16) - dx, 0, 15)
        np.testing.assert_array_equal(out, img[rows[:, None], cols[None, :]])
    assert len(seen) == 49  # all 7 x 7 shifts occur
    np.testing.assert_array_equal(shift_image(img, np.random.default_rng(0), 0), img)


def test_image_aug_modes(dataset, tmp_path):
    from vla_adapter_ros.train.finetune import TrainError

    t = Trainer(_cfg(dataset, tmp_path / "s", image_aug="shift", shift_pixels=2))
    size = t.model_cfg.processor.image_size
    images = [np.random.default_rng(k).integers(0, 256, (size, size, 3), dtype=np.uint8) for k in range(2)]
    clean = t.builder.pixels(images, None)
    shifted = [t.builder.pixels(images, np.random.default_rng(k)) for k in range(8)]
    assert any(not np.array_equal(x, clean) for x in shifted)
    # a shift copies pixels: every shifted input value is one of the clean values of its channel
    for x in shifted:
        for c in range(x.shape[0]):
            assert np.isin(x[c], clean[c]).all()
    t.builder.augment = "none"
    np.testing.assert_array_equal(t.builder.pixels(images, np.random.default_rng(0)), clean)
    assert t.fit()["losses"][-1] > 0
    assert TrainConfig(dataset="d", output_dir="o", image_aug=True).validate().image_aug == "official"
    assert TrainConfig(dataset="d", output_dir="o", image_aug=False).validate().image_aug == "none"
    for bad in (dict(image_aug="hue"), dict(image_aug=None), dict(shift_pixels=-1), dict(shift_pixels=1.5),
                dict(shift_pixels=True)):
        with pytest.raises(TrainError):
            TrainConfig(dataset="d", output_dir="o", **bad).validate()
    p = argparse.ArgumentParser()
    add_arguments(p)
    c = config_from_args(p.parse_args(["d", "o", "--image-aug", "shift", "--shift-pixels", "6"]))
    assert (c.image_aug, c.shift_pixels) == ("shift", 6)
    assert config_from_args(p.parse_args(["d", "o", "--no-image-aug"])).image_aug == "none"
    assert config_from_args(p.parse_args(["d", "o"])).image_aug == "official"
    with pytest.raises(SystemExit):
        p.parse_args(["d", "o", "--image-aug", "shift", "--no-image-aug"])


def test_start_oversampling():
    from vla_adapter_ros.train.finetune import TrainError, oversample_start

    frame_index = np.array([0, 1, 2, 3, 0, 1, 2, 0, 1])  # three episodes of 4, 3 and 2 frames
    rows = np.array([0, 1, 2, 3, 7, 8])  # the training split: episodes 0 and 2
    out = oversample_start(rows, frame_index, 2, 3)
    assert sorted(out.tolist()) == [0, 0, 0, 1, 1, 1, 2, 3, 7, 7, 7, 8, 8, 8]
    np.testing.assert_array_equal(oversample_start(rows, frame_index, 0, 3), rows)
    np.testing.assert_array_equal(oversample_start(rows, frame_index, 2, 1), rows)
    for bad in (dict(start_frames=-1), dict(start_repeat=0), dict(start_repeat=2.0), dict(start_frames=True)):
        with pytest.raises(TrainError):
            TrainConfig(dataset="d", output_dir="o", **bad).validate()
    p = argparse.ArgumentParser()
    add_arguments(p)
    c = config_from_args(p.parse_args(["d", "o", "--start-frames", "5", "--start-repeat", "4"]))
    assert (c.start_frames, c.start_repeat) == (5, 4)


def test_trainer_oversamples_the_opening(dataset, tmp_path):
    t = Trainer(_cfg(dataset, tmp_path / "o", start_frames=2, start_repeat=3))
    frame_index = t.dataset.frames.frame_index
    n_episodes = len(np.unique(t.dataset.frames.episode_index))
    assert len(t.train_idx) == len(t.dataset) + 2 * 2 * n_episodes  # 2 opening frames, 2 extra copies each
    one_epoch = MicroBatches(t.dataset, t.train_idx, 1, None, seed=0)  # the trainer's stream, batch size 1
    epoch = [i for m in range(len(t.train_idx)) for i in one_epoch.indices_of(m)]
    counts = np.bincount(epoch, minlength=len(t.dataset))
    assert set(counts[frame_index < 2]) == {3} and set(counts[frame_index >= 2]) == {1}


def test_resume_identical(dataset, tmp_path):
    a = Trainer(_cfg(dataset, tmp_path / "a", max_steps=4, image_aug=True, grad_accum=2))
    full = a.fit()["losses"]
    b = Trainer(_cfg(dataset, tmp_path / "b", max_steps=4, save_every=2, image_aug=True, grad_accum=2))
    first = b.fit(max_steps=2)["losses"]  # interrupted after step 2 (checkpoint at 2)
    assert (tmp_path / "b/checkpoints/latest").read_text() == "step_000002"
    c = Trainer(_cfg(dataset, tmp_path / "b", max_steps=4, save_every=2, image_aug=True, grad_accum=2))
    assert c.resume() and c.step == 2
    assert c.scheduler.last_epoch == 2
    rest = c.fit()["losses"]
    np.testing.assert_allclose(first, full[:2], rtol=0, atol=1e-6)
    np.testing.assert_allclose(rest, full[2:], rtol=0, atol=1e-5)  # same batches, same weights
    assert (tmp_path / "b/final/model.safetensors").is_file()


def test_cli_and_base_checkpoint(dataset, tmp_path):
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args([str(dataset), str(tmp_path / "r1"), "--base", "tiny", "--max-steps", "2", "--batch-size", "2",
                         "--lora-rank", "2", "--num-workers", "2", "--no-progress", "--val-fraction", "0",
                         "--save-every", "1"])
    c = config_from_args(args)
    assert c.lora_rank == 2 and c.lora_alpha is None and c.use_lora and not c.progress
    assert run(args) == 0
    assert (tmp_path / "r1/final/config.yaml").is_file()
    # fine-tune further from that checkpoint, with resume requested but nothing to resume
    args = p.parse_args([str(dataset), str(tmp_path / "r2"), "--base", str(tmp_path / "r1/final"), "--max-steps", "1",
                         "--batch-size", "1", "--lora-rank", "2", "--num-workers", "0", "--no-progress",
                         "--chunk-len", "4", "--val-fraction", "0", "--resume",
                         "--precision", "bf16"])  # autocast path on CPU
    assert run(args) == 0
    from vla_adapter_ros.model.api import VLAAdapterPolicy

    pol = VLAAdapterPolicy.from_checkpoint(tmp_path / "r2/final")
    assert pol.config.platform.chunk_len == 4
    it = load_dataset(dataset)[0]
    assert pol.predict(it["images"], it["instruction"], it["proprio"]).shape == (4, 8)
    bad = p.parse_args([str(tmp_path / "nope"), str(tmp_path / "r3"), "--base", "tiny", "--no-progress"])
    assert run(bad) == 1


def test_full_finetuning_with_frozen_embeddings(dataset, tmp_path):
    tr = Trainer(_cfg(dataset, tmp_path / "run", use_lora=False, freeze_embeddings=True))
    emb = tr.model.language_model.model.embed_tokens.weight
    names = {n for n, _ in tr.params}
    assert not emb.requires_grad and "language_model.model.embed_tokens.weight" not in names
    assert any(n.startswith("vision_backbone.") for n in names) and any(n.startswith("language_model.") for n in names)
    before_emb = emb.detach().clone()
    before_layer = tr.model.language_model.model.layers[0].mlp.up_proj.weight.detach().clone()
    tr.train_step([tr.train_batches[0]])
    assert torch.equal(emb, before_emb)  # fixed: no gradient, no weight decay
    assert not torch.equal(tr.model.language_model.model.layers[0].mlp.up_proj.weight, before_layer)
    full = Trainer(_cfg(dataset, tmp_path / "run_full", use_lora=False))
    assert full.model.language_model.model.embed_tokens.weight.requires_grad


def test_image_cache_is_transparent(dataset, tmp_path):
    lazy = load_dataset(dataset, chunk_len=4)
    cached = load_dataset(dataset, chunk_len=4)
    cams = cached.cameras
    assert cached.frames.decoded_image_bytes(cams) == len(cached) * sum(
        int(np.prod(lazy[0]["images"][k].shape)) for k in range(len(cams)))
    cached.frames.cache_images(cams)
    for i in (0, 7, len(lazy) - 1):
        for a, b in zip(lazy[i]["images"], cached[i]["images"]):
            assert a.dtype == b.dtype == np.uint8 and np.array_equal(a, b) and a.any()
    # the cache changes nothing but speed: identical losses with and without it
    on = Trainer(_cfg(dataset, tmp_path / "on", cache_images=True, image_aug=True)).fit()["losses"]
    off = Trainer(_cfg(dataset, tmp_path / "off", cache_images=False, image_aug=True)).fit()["losses"]
    np.testing.assert_allclose(on, off, rtol=0, atol=1e-6)
    # shift and none: the cache keeps each image after the inference crop/resize, and the batches are the same
    for aug in ("shift", "none"):
        t_on = Trainer(_cfg(dataset, tmp_path / f"{aug}_on", cache_images=True, image_aug=aug, val_fraction=0.3))
        t_off = Trainer(_cfg(dataset, tmp_path / f"{aug}_off", cache_images=False, image_aug=aug, val_fraction=0.3))
        proc = t_on.model_cfg.processor
        size = proc.image_size
        assert t_on.dataset[0]["images_prepared_for"] == proc and t_off.dataset[0]["images_prepared_for"] is None
        assert t_on.dataset[0]["images"][0].shape == (size, size, 3) != t_off.dataset[0]["images"][0].shape
        for i in (0, 5):
            pairs = [(t_on, t_on.dataset[i]), (t_off, t_off.dataset[i])]
            np.testing.assert_array_equal(*[t.builder.sample(it)["pixel_values"] for t, it in pairs])
            np.testing.assert_array_equal(*[t.builder.sample(it, np.random.default_rng(i))["pixel_values"]
                                            for t, it in pairs])
        # each trainer seeds the global RNGs when it is built: build and fit one after the other
        r_on = Trainer(_cfg(dataset, tmp_path / f"{aug}_on2", cache_images=True, image_aug=aug, val_fraction=0.3)).fit()
        r_off = Trainer(_cfg(dataset, tmp_path / f"{aug}_off2", cache_images=False, image_aug=aug,
                             val_fraction=0.3)).fit()
        np.testing.assert_allclose(r_on["losses"], r_off["losses"], rtol=0, atol=1e-6)
        assert r_on["val_l1"] == pytest.approx(r_off["val_l1"], abs=1e-6)
    # a prepared image is never prepared twice, nor taken for another model's, nor augmented the official way
    item = t_on.dataset[0]
    other = dataclasses.replace(proc, image_size=size // 2)
    with pytest.raises(ValueError, match="prepared for another model's image processing"):
        t_on.builder.sample({**item, "images_prepared_for": other})
    with pytest.raises(ValueError, match="official augmentation crops the raw image"):
        BatchBuilder(t_on.model_cfg, t_on.normalizer, t_on.tokenizer, "official").pixels(
            item["images"], np.random.default_rng(0), prepared=True)
    with pytest.raises(ValueError, match=f"prepared images must be {size}x{size}"):
        t_on.builder.pixels(t_off.dataset[0]["images"], None, prepared=True)
    partial = load_dataset(dataset, chunk_len=4)
    partial.frames.cache_images(partial.cameras[:1], prepare_for=proc)
    assert len(partial.cameras) == 2
    with pytest.raises(ConvertError, match="not in the prepared image cache"):
        partial[0]
    p = add_arguments(argparse.ArgumentParser())
    assert p.parse_args(["d", "o"]).cache_images is None
    assert p.parse_args(["d", "o", "--cache-images"]).cache_images is True
    assert p.parse_args(["d", "o", "--no-cache-images"]).cache_images is False


def test_diagnose_reports_input_use(dataset, tmp_path, capsys):
    from vla_adapter_ros.model.checkpoint import load_checkpoint
    from vla_adapter_ros.train import diagnose as dg

    Trainer(_cfg(dataset, tmp_path / "np", use_proprio=False)).fit()
    ck = tmp_path / "np/final"
    r = dg.diagnose(ck, dataset, num_frames=12, batch_size=6, seed=1)
    assert r["frames"] == 12 and not r["uses_proprio"] and len(r["l1_per_dim"]) == len(r["action_names"]) == 8
    assert r["swap"]["proprio"]["moved"] == 0.0  # no proprio input: swapping it cannot move the output
    assert r["swap"]["images"]["moved"] > 0.0 and r["swap"]["instruction"]["changed"] > 0
    # the reported L1 is the masked mean |prediction - target| on exactly those frames
    model, norm = load_checkpoint(ck)
    ds = load_dataset(dataset, chunk_len=model.config.platform.chunk_len)
    rows = np.sort(np.random.default_rng(1).choice(len(ds), size=12, replace=False))
    from vla_adapter_ros.model.processor import QwenTokenizer
    from vla_adapter_ros.train.finetune import BatchBuilder

    errs = []
    for part in (rows[:6], rows[6:]):
        b = BatchBuilder(model.config, norm, QwenTokenizer.load(ck)).batch([ds[int(i)] for i in part])
        with torch.no_grad():
            pred = model(b["pixel_values"], b["input_ids"], b["attention_mask"], b["proprio"]).numpy()
        m = b["action_mask"].numpy()[..., None]
        errs.append((np.abs(pred - b["actions"].numpy()) * m).sum((0, 1)) / m.sum())
    np.testing.assert_allclose(r["l1_per_dim"], np.mean(errs, 0), rtol=1e-5, atol=1e-7)
    assert "no proprio input" in dg.format_report(r)
    # CLI: report on stdout, JSON file, clear error for a mismatching dataset
    p = argparse.ArgumentParser()
    dg.add_arguments(p)
    assert dg.run(p.parse_args([str(ck), str(dataset), "--frames", "8", "--batch-size", "4", "--json",
                                str(tmp_path / "d.json"), "--no-progress"])) == 0
    assert "input taken from another frame" in capsys.readouterr().out
    assert json.loads((tmp_path / "d.json").read_text())["frames"] == 8
    assert dg.run(p.parse_args([str(ck), str(dataset), "--batch-size", "1"])) == 2
    assert "at least 2" in capsys.readouterr().err


def test_one_instruction_for_every_frame(dataset, tmp_path):
    """train --instruction: the language-blind baseline sees one text for every frame, whatever the frame's."""
    t = Trainer(_cfg(dataset, tmp_path / "blind", instruction="do the task"))
    items = [t.dataset[i] for i in range(len(t.dataset))]
    assert {it["instruction"] for it in items} == {"pick up the cube", "open the drawer"}
    ids = {tuple(t.builder.sample(it)["input_ids"].tolist()) for it in items}
    assert len(ids) == 1
    own = Trainer(_cfg(dataset, tmp_path / "own"))
    assert len({tuple(own.builder.sample(it)["input_ids"].tolist()) for it in items}) == 2
    assert ids.isdisjoint({tuple(own.builder.sample(it)["input_ids"].tolist()) for it in items})
    t.fit()
    assert json.loads((tmp_path / "blind" / "final" / "training.json").read_text())["instruction"] == "do the task"
    for bad in ("", "  ", 3):
        with pytest.raises(TrainError, match="instruction must be a non-empty text"):
            TrainConfig(dataset="d", output_dir="o", instruction=bad).validate()
    p = add_arguments(argparse.ArgumentParser())
    assert config_from_args(p.parse_args(["d", "o", "--instruction", "do it"])).instruction == "do it"
    assert config_from_args(p.parse_args(["d", "o"])).instruction is None
