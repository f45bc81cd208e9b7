"""Building or loading the diffusion inpainting pipeline, once per process.

`--inpaint-model` is one of:
    tiny       a small random StableDiffusionInpaintPipeline built in-process (no download; its
               tokenizer is built on the spot from a byte-level vocabulary). Its fills are noise-like
               textures, not photographic: for tests, demos and benchmarks only.
    DIR        a local diffusers pipeline folder (with model_index.json).
    OWNER/NAME a hub id, loaded with `local_files_only=True` from the Hugging Face cache, so an
               offline machine fails at once instead of hanging on the network.

Nothing here imports torch or diffusers at module level: `forgery synth --help` stays instant.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

TINY = "tiny"
TINY_SIZE = 64
"""The tiny pipeline's native resolution (pixels per side)."""

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = ("auto", "float32", "float16", "bfloat16")


class ModelUnavailable(Exception):
    """A model named by an option cannot be loaded; the message names the option and what was tried."""


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" if available, else "mps" if available, else "cpu"; other names are checked."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    base = device.split(":")[0]
    if base not in DEVICES:
        raise ValueError(f"--device {device!r} is not one of {', '.join(DEVICES)} (or cuda:N)")
    if base == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    if base == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ValueError(f"--device {device}: MPS is not available on this machine")
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """"auto" -> float16 on CUDA, float32 elsewhere (CPU half precision is slow and lossy)."""
    if dtype == "auto":
        return "float16" if device.startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return dtype


_pipelines: dict[tuple[str, str, str], Any] = {}


def get_pipeline(model: str, device: str, dtype: str) -> Any:
    """The inpainting pipeline for `model` on a resolved `device` with `dtype`, cached per process.

    Raises ModelUnavailable when it cannot be built or loaded.
    """
    key = (model, device, dtype)
    if key not in _pipelines:
        import torch

        pipe = build_tiny_pipeline() if model == TINY else load_pipeline(model, getattr(torch, dtype))
        if model == TINY and dtype != "float32":
            pipe = pipe.to(dtype=getattr(torch, dtype))
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        _pipelines.clear()  # one model per process: a second one would double the memory
        _pipelines[key] = pipe
    return _pipelines[key]


def native_size(pipe: Any) -> int:
    """Pixels per side the pipeline was trained at (UNet sample size x VAE scale factor)."""
    return int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)


def load_pipeline(model: str, torch_dtype: Any) -> Any:
    """Load `model` (a local folder or a cached hub id) through AutoPipelineForInpainting, offline."""
    from diffusers import AutoPipelineForInpainting

    path = Path(model).expanduser()
    tried: list[str] = []
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelUnavailable(
                f"--inpaint-model {model}: the folder has no model_index.json, so it is not a diffusers pipeline "
                "(use a folder saved with save_pretrained, a hub id already in the cache, or 'tiny')"
            )
        source = str(path)
        tried.append(f"the local folder {path}")
    elif path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelUnavailable(f"--inpaint-model {model}: no such folder (and not a hub id of the form OWNER/NAME)")
    else:
        source = model
        tried.append(f"the Hugging Face cache {_hub_cache()} only (local_files_only=True: nothing is downloaded)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # hub deprecation chatter; failures raise
            return AutoPipelineForInpainting.from_pretrained(
                source, torch_dtype=torch_dtype, local_files_only=True, safety_checker=None, requires_safety_checker=False,
            )
    except Exception as e:  # diffusers raises OSError, ValueError, EnvironmentError, ... depending on what is missing
        first = (str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__).rstrip(".")
        raise ModelUnavailable(
            f"--inpaint-model {model}: cannot load an inpainting pipeline; tried {', '.join(tried)}: {first}. "
            "Download it first (e.g. `huggingface-cli download OWNER/NAME`) or pass a local folder, "
            "or use --inpaint-model tiny for a random test pipeline"
        ) from None


def _hub_cache() -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return str(HF_HUB_CACHE)


def tiny_tokenizer() -> Any:
    """A CLIP tokenizer over a byte-level vocabulary (no merges): 512 byte symbols + 2 specials."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    symbols = sorted(ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": i + len(symbols) for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_tiny_pipeline() -> Any:
    """A small random StableDiffusionInpaintPipeline (about 2M parameters, native size 64 px).

    The weights come from a fixed seed inside `torch.random.fork_rng`, so every process builds the
    same pipeline and the global random state is left as it was.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        PNDMScheduler,
        StableDiffusionInpaintPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            block_out_channels=(32, 64), layers_per_block=1, sample_size=TINY_SIZE // 2, in_channels=9, out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32, attention_head_dim=8,
        )
        vae = AutoencoderKL(
            block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, sample_size=TINY_SIZE,
            down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        )
        text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
            max_position_embeddings=77, layer_norm_eps=1e-5, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        ))
    return StableDiffusionInpaintPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=PNDMScheduler(skip_prk_steps=True, steps_offset=1), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
