"""VLA-Adapter (arXiv 2509.09372) in pure PyTorch: model, processor, normalization, checkpoints.

No ROS imports here. Heavy dependencies (torch, transformers) load lazily on first attribute access
so that ``import vla_adapter_ros.model`` stays cheap.
"""

from importlib import import_module

_EXPORTS = {
    # config
    "VLAAdapterConfig": "config",
    "ConfigError": "config",
    "get_config": "config",
    "official_config": "config",
    "tiny_config": "config",
    "PRESETS": "config",
    # network
    "VLAAdapter": "vla",
    "build_model": "vla",
    "count_parameters": "vla",
    "BridgeAttentionPolicy": "policy",
    "BridgeAttentionBlock": "policy",
    "ProprioProjector": "policy",
    "FusedVisionBackbone": "vision",
    "FusedProjector": "vision",
    # processor
    "QwenTokenizer": "processor",
    "build_prompt": "processor",
    "tokenize_prompt": "processor",
    "preprocess_images": "processor",
    "prepare_image": "processor",
    "normalize_image": "processor",
    "resize_lanczos": "processor",
    "center_crop_resize": "processor",
    "jpeg_roundtrip": "processor",
    "collate": "processor",
    # normalization
    "Normalizer": "normalization",
    "postprocess_gripper": "normalization",
    # checkpoints
    "CheckpointError": "checkpoint",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_official_checkpoint": "checkpoint",
    "save_official_layout": "checkpoint",
    # lora
    "apply_lora": "lora",
    "merge_lora": "lora",
    "set_trainable": "lora",
    # entry point
    "VLAAdapterPolicy": "api",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
