"""Weights as safetensors + ``config.json`` + a model card, on disk and on the Hugging Face Hub.

The layout is the one ``huggingface_hub.ModelHubMixin`` writes (``model.safetensors``, ``config.json``,
``README.md``), so the Hub renders and counts our repos like any other; the mixin itself is not used
because a model is rebuilt from its config through the plugin registry (the cell class is looked up by
name), which ModelHubMixin's init-argument capture cannot express.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from .io import atomic_write, read_json, refuse_overwrite, write_json, write_text
from .weights import load_weights

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"


def hub_endpoint() -> str | None:
    """The Hub to talk to: ``$MSRNN_ZOO_HUB_ENDPOINT`` or ``$HF_ENDPOINT`` (mirrors, tests), else the default."""
    return os.environ.get("MSRNN_ZOO_HUB_ENDPOINT") or os.environ.get("HF_ENDPOINT") or None


class HubMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for :class:`~msrnn_zoo.network.Forecaster`."""

    config: Any

    def save_pretrained(self, directory: str | Path, *, card: str | None = None, force: bool = False) -> Path:
        """Write ``model.safetensors``, ``config.json`` and, if given, the model card into ``directory``."""
        directory = Path(directory)
        refuse_overwrite(directory / WEIGHTS_NAME, force, "model")
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}  # type: ignore[attr-defined]
        meta = {"format": "pt", "library": "msrnn-zoo"}
        atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata=meta))
        write_json(directory / CONFIG_NAME, self.config.to_dict())
        if card is not None:
            write_text(directory / CARD_NAME, card)
        return directory

    @classmethod
    def from_pretrained(cls, source: str | Path, *, revision: str | None = None,
                        cache_dir: str | Path | None = None, token: str | None = None,
                        local_files_only: bool = False, map_location: str = "cpu", cast: bool = False) -> Any:
        """Load a model from a local directory or a Hub repo id (``user/repo``).

        Weights must match the config exactly (names, shapes, float32, finite); ``cast=True`` accepts
        floating-point weights of another precision, converted on load.
        """
        from .factory import from_config
        from .network import ForecasterConfig

        directory = Path(source)
        if directory.is_dir():
            config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
            for path in (config_path, weights_path):
                if not path.is_file():
                    raise FileNotFoundError(f"{directory} has no {path.name}: it is not a directory written by "
                                            "save_pretrained or `msrnn-zoo train`.")
        else:
            config_path, weights_path = (
                Path(_download(str(source), name, revision, cache_dir, token, local_files_only))
                for name in (CONFIG_NAME, WEIGHTS_NAME)
            )
        config = ForecasterConfig.from_dict(read_json(config_path, "model config"), what=str(config_path))
        try:
            model = from_config(config)
        except ValueError as exc:  # an unknown cell, options it rejects: name the file they came from
            raise ValueError(f"{config_path}: {exc}") from exc
        load_weights(model, weights_path, device=map_location, cast=cast)
        return model

    def push_to_hub(self, repo_id: str, *, card: str | None = None, token: str | None = None, private: bool = False,
                    commit_message: str = "Upload msrnn-zoo model") -> str:
        """Create ``repo_id`` if needed and upload weights, config and card in one commit; returns its URL."""
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(endpoint=hub_endpoint(), token=token)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, card=card)
            try:
                api.create_repo(repo_id, private=private, exist_ok=True)
                info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
            except Exception as exc:  # the HTTP library's errors are not OSErrors: say what failed, in one line
                where = hub_endpoint() or "the Hugging Face Hub"
                raise OSError(f"Could not push to {repo_id!r} on {where} ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}). Check the network, the "
                              "repo id and your token (huggingface-cli login); nothing was published.") from exc
        return str(getattr(info, "commit_url", info))


def _download(repo_id: str, filename: str, revision: str | None, cache_dir: str | Path | None, token: str | None,
              local_files_only: bool) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    if repo_id.count("/") != 1 or repo_id.startswith(("/", ".")):
        raise FileNotFoundError(f"{repo_id!r} is neither a local directory nor a Hub repo id like 'user/model'.")
    try:
        # HF_HUB_CACHE is read here, not at huggingface_hub's import, so a later setting still counts.
        cache_dir = cache_dir or os.environ.get("HF_HUB_CACHE") or None
        return hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir, token=token,
                               local_files_only=local_files_only, endpoint=hub_endpoint())
    except RepositoryNotFoundError as exc:
        raise FileNotFoundError(f"No Hub repo {repo_id!r} (or no access to it: pass a token).") from exc
    except EntryNotFoundError as exc:
        raise FileNotFoundError(f"Hub repo {repo_id!r} has no {filename}: it is not an msrnn-zoo model.") from exc


def resolve_pretrained(model_name: str, pretrained: bool | str, **overrides: Any) -> Any:
    """The model ``model_name`` with weights from a published tag, a local directory or a Hub repo."""
    from .network import Forecaster
    from .registry import get_model

    entry = get_model(model_name)
    if pretrained is True:
        if not entry.pretrained:
            raise ValueError(f"{model_name!r} has no published checkpoint yet; train one with `msrnn-zoo train "
                             f"{model_name}` or pass a directory/Hub repo as pretrained=.")
        pretrained = next(iter(entry.pretrained))
    assert isinstance(pretrained, str)
    if pretrained in entry.pretrained:
        source: str = entry.pretrained[pretrained]
    elif Path(pretrained).is_dir() or "/" in pretrained:
        source = pretrained
    else:
        tags = ", ".join(entry.pretrained) or "none yet"
        raise ValueError(f"{model_name!r} has no checkpoint tagged {pretrained!r} (published tags: {tags}); "
                         "pretrained= also takes a directory written by save_pretrained or a Hub repo id.")
    model = Forecaster.from_pretrained(source)
    if model.config.cell != entry.cell or model.config.schedule != entry.schedule:
        raise ValueError(f"{source} holds a {model.config.schedule}-scale {model.config.cell} model, "
                         f"not {model_name!r}.")
    if overrides:
        raise ValueError(f"Config overrides {sorted(overrides)} cannot be applied to pretrained weights; "
                         "load the checkpoint as it was trained.")
    return model
