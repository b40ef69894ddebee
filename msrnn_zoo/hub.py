"""Weights as safetensors + ``config.json`` + a model card, on disk and on the Hugging Face Hub.

The layout is the one ``huggingface_hub.ModelHubMixin`` writes (``model.safetensors``, ``config.json``,
``README.md``), so the Hub renders and counts our repos like any other; the mixin itself is not used
because a model is rebuilt from its config through the plugin registry (the cell class is looked up by
name), which ModelHubMixin's init-argument capture cannot express.

Talking to the Hub fails in a handful of ways a user can cause or meet: offline with nothing cached, no
network, an unknown or private repo, a revision that does not exist, a repo that is not ours, a download
that arrived damaged. Each becomes one :class:`HubError` that names the repo and the cause, and none waits
on huggingface_hub's retries: one metadata request decides, before any download starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from .io import atomic_write, file_hash, read_json, refuse_overwrite, write_json, write_text, written_by_us
from .validation import with_cli_message
from .versions import WRITTEN_BY, written_by
from .weights import (
    UnreadableWeightsError,
    check_weights,
    load_weights,
    versions_metadata,
    weights_layout,
    writers_of,
)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
DEFAULT_ENDPOINT = "https://huggingface.co"
RUN_EXTRAS = ("metrics-test.json", "metrics.png", "forecast.png", "recipe.json", "profile.json")
"""What `push` uploads beside a model when the run has it. Left in the repo by an earlier push, these would
describe that model beside this one's card and weights, so a push that brings none of its own removes them."""
_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NETWORK_ERRORS = {"ConnectError", "ConnectTimeout", "ConnectionError", "NetworkError", "ReadTimeout",
                   "TimeoutException", "Timeout", "ProxyError", "SSLError", "RemoteProtocolError", "ReadError",
                   "WriteError", "PoolTimeout", "WriteTimeout"}


class HubError(OSError):
    """A Hub operation failed; the message names the repo and the cause, and what to do."""


class HubRepoNotFoundError(HubError, FileNotFoundError):
    """The repo (or the revision, or a file in it) does not exist, or cannot be seen without a token."""


def hub_endpoint() -> str | None:
    """The Hub to talk to: ``$MSRNN_ZOO_HUB_ENDPOINT`` or ``$HF_ENDPOINT`` (mirrors, tests), else the default."""
    return os.environ.get("MSRNN_ZOO_HUB_ENDPOINT") or os.environ.get("HF_ENDPOINT") or None


def hub_offline() -> bool:
    """Whether offline mode is on, read now (huggingface_hub reads ``HF_HUB_OFFLINE`` once, at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.upper() in {"1", "ON", "YES", "TRUE"} or bool(getattr(constants, "HF_HUB_OFFLINE", False))


def offline_setting() -> str:
    """The setting that turned offline mode on, as it was given (``HF_HUB_OFFLINE=1``), for messages: advice to
    unset HF_HUB_OFFLINE when it was TRANSFORMERS_OFFLINE that was set changed nothing, and was given again."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # the first one set decides, as in hub_offline
        if os.environ.get(name):
            return f"{name}={os.environ[name]}"
    return "HF_HUB_OFFLINE=1"  # huggingface_hub read it at its import, and it was unset since


def hub_cache(cache_dir: str | Path | None = None) -> str:
    """The cache huggingface_hub downloads into (``$HF_HUB_CACHE`` is read now, not at its import).

    ``$HF_HUB_CACHE`` is expanded as huggingface_hub expands it (``~`` and ``$VAR``): read as it was,
    ``HF_HUB_CACHE='$HOME/x'`` (single quotes in a job script) made a folder named ``$HOME`` in the working directory.
    A variable in it that is not set is a ``ValueError`` saying so, not a folder of that name."""
    import re

    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_CACHE")
    if cache_dir or not value:
        return str(cache_dir or constants.HF_HUB_CACHE)
    expanded = os.path.expandvars(os.path.expanduser(value))
    unset = re.search(r"\$(\w+|\{[^}]*\})", expanded)  # expandvars leaves a variable that is not set as it is
    if unset:
        raise ValueError(f"HF_HUB_CACHE is {value!r}, and ${unset.group(1).strip('{}')} in it is not set (a shell "
                         "expands $VAR only outside single quotes, and only once set): set HF_HUB_CACHE to the Hub "
                         "cache's folder itself, or set that variable first.")
    return expanded


def network_cause(exc: BaseException) -> str | None:
    """If ``exc`` (or what caused it) is a connection failure, a short description of it; else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        names = {cls.__name__ for cls in type(current).__mro__}
        if names & _NETWORK_ERRORS or isinstance(current, (ConnectionError, TimeoutError)):
            if type(current).__name__ == "OfflineModeIsEnabled":
                return "offline mode is on"
            text = str(current).strip() or type(current).__name__
            refused = "refused" in text.lower()
            return "connection refused" if refused else f"{type(current).__name__}: {text.splitlines()[0][:200]}"
        current = current.__cause__ or current.__context__
    return None


def _bad_endpoint_setting() -> str | None:
    """The variable that set the Hub's address to something that is no http(s) URL (``HF_ENDPOINT=huggingface.co``,
    a value pasted wrong), as it was given: every Hub call then fails with httpx's ``UnsupportedProtocol``, which
    named neither the variable nor the fix."""
    for name in ("MSRNN_ZOO_HUB_ENDPOINT", "HF_ENDPOINT"):  # the first one set decides, as in hub_endpoint
        value = os.environ.get(name)
        if value:
            return None if value.strip().lower().startswith(("http://", "https://")) else f"{name}={value!r}"
    return None


def _where(repo_id: str, revision: str | None) -> str:
    return f"Hub repo {repo_id!r}" + (f" at revision {revision!r}" if revision else "")


def _endpoint_name() -> str:
    return hub_endpoint() or DEFAULT_ENDPOINT


def _has_token(token: str | bool | None) -> bool:
    if isinstance(token, str):
        return bool(token)
    if token is False:
        return False
    from huggingface_hub import get_token

    return get_token() is not None


def clean_token(token: str | bool | None) -> str | bool | None:
    """``token`` without the spaces and line ends a copy from a file brings (sent as they are, they made
    ``Illegal header value``), as huggingface_hub cleans the tokens it reads itself; an empty one is refused
    by name: it is most often an unset variable (``--token "$HF_TOKEN"``), and would be sent as ``Bearer ``."""
    if not isinstance(token, str):
        return token
    if not token.strip():
        raise ValueError(f"The token given is empty ({token!r}): was its variable unset? Pass a Hub token, or "
                         "leave out --token / token= to use the one `hf auth login` stored (or $HF_TOKEN).")
    return token.strip()


def explain(exc: BaseException, repo_id: str, revision: str | None, action: str, token: str | bool | None,
            filename: str | None = None) -> HubError:
    """One plain error for a failed Hub call: which repo, what went wrong, what to do."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = _where(repo_id, revision)
    endpoint = _endpoint_name()
    setting = _bad_endpoint_setting()
    if setting is not None:
        return HubError(f"Could not {action} {where}: {setting} is not the address of a Hub. Set it to a URL such "
                        f"as {DEFAULT_ENDPOINT} (or your mirror's, with http:// or https://), or unset it.")
    cause = network_cause(exc)
    if cause is not None:
        return HubError(f"Cannot reach the Hub at {endpoint} to {action} {where} ({cause}). Check the network "
                        "connection (or HF_ENDPOINT / MSRNN_ZOO_HUB_ENDPOINT if you use a mirror).")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    server_message = ""
    response = getattr(exc, "response", None)
    if response is not None:
        server_message = response.headers.get("X-Error-Message", "") or ""
    if status == 401 and "credentials" in server_message.lower():
        return HubError(f"The Hub at {endpoint} rejected the token while trying to {action} {where} (HTTP 401: "
                        "invalid credentials). Log in again with `hf auth login`, or pass a valid --token / token=.")
    if isinstance(exc, GatedRepoError):
        return HubRepoNotFoundError(f"{where} is gated (HTTP 403): accept its conditions on the Hub with the "
                                    "account of your token, then try again.")
    if isinstance(exc, RevisionNotFoundError):
        return HubRepoNotFoundError(f"{where}: no such revision on the Hub at {endpoint} (HTTP 404). A revision is a "
                                    "branch, a tag or a commit id of the repo.")
    if action == "push to" and status == 401 and not _has_token(token):  # not "not found": it would be created
        return HubError(f"Pushing to {where} needs a token with write access, and none was found (the Hub at "
                        f"{endpoint} answered HTTP 401). Log in with `hf auth login`, or pass --token / token=, or "
                        "set HF_TOKEN.")
    if isinstance(exc, RepositoryNotFoundError) or status == 401:
        if not _has_token(token):
            return HubRepoNotFoundError(
                f"{where} was not found on the Hub at {endpoint} (HTTP {status or 401}): it does not exist, or it is "
                "private or gated and no token was sent (the Hub answers both alike). Check the repo id, or log in "
                "with `hf auth login` (or pass --token / token=).")
        return HubRepoNotFoundError(f"{where} was not found on the Hub at {endpoint} (HTTP {status or 404}), or the "
                                    "token's account cannot see it. Check the repo id and the token's access.")
    if isinstance(exc, EntryNotFoundError) and filename is not None:
        return HubRepoNotFoundError(
            f"{where} has no {filename}: it is not an msrnn-zoo model. An msrnn-zoo repo holds {CONFIG_NAME} and "
            f"{WEIGHTS_NAME}, as `msrnn-zoo push` and push_to_hub write them.")
    if status == 403 and action != "push to":  # "no write access ... push to your own" answered a download
        return HubError(f"The Hub at {endpoint} refused to let this token {action} {where} (HTTP 403"
                        f"{': ' + server_message if server_message else ''}): its account may not read that repo. Use "
                        "a token that may (a fine-grained token must be given read access to it), or log in again "
                        "with `hf auth login`.")
    if status == 403:
        return HubError(f"The Hub at {endpoint} refused to let this token {action} {where} (HTTP 403: no write "
                        f"access{': ' + server_message if server_message else ''}). Use a token with write access "
                        "to that namespace, or push to your own (--repo-id YOU/NAME).")
    if isinstance(exc, HfHubHTTPError) and status is not None:
        detail = f": {server_message}" if server_message else ""
        later = " Try again later." if status >= 500 else ""
        if status == 429:  # rate limited: "HTTP 429" alone said neither that nor to wait, nor that a token helps
            wait = response.headers.get("Retry-After", "") if response is not None else ""
            pause = f" {wait} s" if wait.isdigit() else " a few minutes"
            login = "" if _has_token(token) else ", logged in (`hf auth login`, or --token / token=), as requests " \
                "with a token are allowed more"
            later = f" The Hub limits how many requests one may make: wait{pause} and try again{login}."
        return HubError(f"The Hub at {endpoint} answered HTTP {status} when asked to {action} {where}{detail}.{later}")
    return HubError(f"Could not {action} {where}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def verify_cached(path: str | Path, repo_id: str, revision: str | None) -> None:
    """Check a cached file against the hash the Hub gave for it (its blob is named by it).

    huggingface_hub stores each download as ``blobs/<etag>`` -- the sha256 of an LFS file, the git object
    id of a regular one -- and links the snapshot to it, so a damaged download or cache is caught here
    instead of loading as garbage weights.
    """
    real = Path(os.path.realpath(path))
    name = real.name
    if _HEX64.fullmatch(name):
        algorithm, digest = "sha256", file_hash(real, hashlib.sha256())
    elif _HEX40.fullmatch(name):
        algorithm = "git object id"
        digest = file_hash(real, hashlib.sha1(b"blob %d\0" % real.stat().st_size))
    else:
        return  # no symlinked blob (e.g. a copy on Windows): nothing to compare with
    if digest != name:
        filename = Path(path).name
        again = f"msrnn-zoo pull {repo_id}" + (f" --revision {revision}" if revision else "") + " --force"
        raise HubError(f"The {filename} of {_where(repo_id, revision)} is corrupt in the cache ({real}): its "
                       f"{algorithm} is {digest[:12]}..., the Hub's is {name[:12]}.... Download it again with "
                       f"`{again}` (or force_download=True).")


def download_files(repo_id: str, filenames: tuple[str, ...], *, revision: str | None = None,
                   cache_dir: str | Path | None = None, token: str | bool | None = None,
                   local_files_only: bool = False, force_download: bool = False,
                   optional: tuple[str, ...] = (), from_hub: bool = False) -> tuple[dict[str, Path], str | None]:
    """Files of a Hub repo from the cache, or downloaded into it: ``({name: path}, commit id)``.

    One metadata request (no retries) decides whether the Hub can be reached; if it cannot, the cache is
    used (unless ``from_hub``: ``pull``, whose point is to download), and if the cache lacks the files the
    error says so at once. Files named in ``optional`` may be absent from the repo. Every file is checked
    against the Hub's hash before it is returned.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    from .io import check_folder_path

    if repo_id.count("/") != 1 or repo_id.startswith(("/", ".", "~")) or repo_id.endswith("/"):
        home = " (~ is not expanded here: pass os.path.expanduser(PATH))" if repo_id.startswith("~") else ""
        raise FileNotFoundError(f"{repo_id!r} is neither a local directory{home} nor a Hub repo id like "
                                "'user/model'.")
    # quoted, with the Hub's rule: huggingface_hub's own message printed the id bare, a terminal's escape codes in it
    # (pasted, or in a script's variable) acted on the terminal, and it did not say it was the id that was refused
    check_repo_id(repo_id)
    if revision is not None and not revision.strip():  # sent as it is, the Hub's answer reads as no revision at all
        raise ValueError(f"The revision given ({revision!r}) names no branch, tag or commit; leave out --revision / "
                         "revision= for the main branch.")
    token = clean_token(token)
    cache = hub_cache(cache_dir)
    chosen_by = next((name for name, value in (("cache_dir=", cache_dir), ("$HF_HUB_CACHE", os.environ.get(
        "HF_HUB_CACHE")), ("$HUGGINGFACE_HUB_CACHE", os.environ.get("HUGGINGFACE_HUB_CACHE")), ("$HF_HOME",
        os.environ.get("HF_HOME"))) if value), "huggingface_hub's default")
    # else huggingface_hub's bare "[Errno 20] Not a directory" after the metadata request, naming no setting
    check_folder_path(cache, f"Cannot download into the Hub cache {cache} (from {chosen_by})")
    endpoint = hub_endpoint()
    offline = local_files_only or hub_offline()
    setting = offline_setting()
    why_offline, online_again = ((f"offline mode is on ({setting})", f"unset {setting.split('=')[0]}") if hub_offline()
                                 else ("local_files_only=True was asked", "leave out local_files_only"))
    pull = f"msrnn-zoo pull {repo_id}" + (f" --revision {revision}" if revision else "")
    if offline and from_hub:  # "Pulled" from the cache would tell of a download that did not happen
        # (checked before force_download: pull --force was told to leave out force_download "to load it from the
        # cache", which pull never does, and which then met this refusal)
        raise HubError(f"Cannot download {_where(repo_id, revision)}: {why_offline}, so nothing was downloaded. To "
                       f"download it, {online_again} where the Hub can be reached and pull again."
                       f"{_cached_note(repo_id, filenames, revision, cache)}")
    if offline and force_download:
        raise HubError(f"Cannot download {_where(repo_id, revision)} again: {why_offline}; {online_again} to "
                       "download it, or leave out force_download to load it from the cache.")
    unreachable: str | None = None
    if not offline:
        url = hf_hub_url(repo_id, filenames[0], revision=revision, endpoint=endpoint)
        try:
            get_hf_file_metadata(url, token=token)
        except Exception as exc:  # every failure is explained below, or by the cache fallback
            cause = network_cause(exc)
            if cause is None:
                raise _unfinished_push(exc, repo_id, revision, token) or explain(
                    exc, repo_id, revision, "download", token, filenames[0]) from exc
            unreachable = cause
    if unreachable is not None and (from_hub or force_download):  # the cache cannot stand in for a download
        cached = _cached_note(repo_id, filenames, revision, cache)
        raise HubError(f"Cannot reach the Hub at {_endpoint_name()} to download {_where(repo_id, revision)} "
                       f"({unreachable}); nothing was downloaded. Check the network connection (or HF_ENDPOINT / "
                       f"MSRNN_ZOO_HUB_ENDPOINT if you use a mirror).{cached}")
    use_cache_only = offline or unreachable is not None
    paths: dict[str, Path] = {}
    commit: str | None = None
    for name in filenames:
        pinned = commit or revision  # after the first file, stay on its commit
        try:
            path = Path(hf_hub_download(repo_id, name, revision=pinned, cache_dir=cache, token=token,
                                        local_files_only=use_cache_only, force_download=force_download,
                                        endpoint=endpoint))
        except LocalEntryNotFoundError as exc:
            if name in optional:
                continue
            where = _where(repo_id, revision)
            cached, fill = _cache_to_fill(repo_id, pull, cache, chosen_by)
            whole = _cached_commit_starting_with(repo_id, revision, cache)
            if whole is not None:
                why = why_offline if unreachable is None else f"the Hub cannot be reached ({unreachable})"
                raise HubError(f"Cannot load {where} from {cached}, as {why}: the cache finds a commit by its whole "
                               f"id only, and holds commit {whole}, which begins with {revision!r}. Pass "
                               f"revision={whole!r}.") from exc
            if unreachable is not None:
                raise HubError(f"Cannot reach the Hub at {_endpoint_name()} to download {where} ({unreachable}), and "
                               f"its {name} is not in {cached}. Check the network connection; or {fill}.") from exc
            raise HubError(f"Cannot load {where}: {why_offline} and its {name} is not in {cached}. {fill[0].upper()}"
                           f"{fill[1:]}; or {online_again}.") from exc
        except EntryNotFoundError as exc:
            if name in optional:
                continue
            raise _unfinished_push(exc, repo_id, revision, token) or explain(
                exc, repo_id, revision, "download", token, name) from exc
        except Exception as exc:
            cause = network_cause(exc)
            if cause is not None and not use_cache_only:  # the Hub answered the metadata request: it was reached
                raise HubError(f"The download of {name} of {_where(repo_id, revision)} from {_endpoint_name()} broke "
                               f"off ({cause}); what arrived was not kept. Try again (`{pull}`); if it keeps "
                               "breaking off, check the network connection or proxy.") from exc
            if isinstance(exc, OSError) and _in_folder(exc.filename, cache):  # was "Could not download ...:
                # PermissionError: [Errno 1] ... .incomplete", naming neither the cache's setting nor a way out
                load = "" if from_hub else "; to load only what it holds, without the Hub, set HF_HUB_OFFLINE=1"
                raise HubError(f"Cannot write the {name} of {_where(repo_id, revision)} into the Hub cache {cache} "
                               f"(from {chosen_by}): {exc.strerror or exc} ({exc.filename}). Set HF_HUB_CACHE to a "
                               f"folder you can write to{load}.") from exc
            raise explain(exc, repo_id, revision, "download", token, name) from exc
        verify_cached(path, repo_id, revision)
        paths[name] = path
        snapshot = path.parent.name
        if commit is None and _HEX40.fullmatch(snapshot):
            commit = snapshot
    return paths, commit


def _in_folder(path: Any, folder: str) -> bool:
    """Whether ``path`` (an ``OSError``'s filename: a string, bytes or None) is ``folder`` or lies inside it."""
    if not isinstance(path, str):
        return False
    where, inside = Path(path).expanduser().resolve(), Path(folder).expanduser().resolve()
    return where == inside or inside in where.parents


def _cached_commit_starting_with(repo_id: str, revision: str | None, cache: str) -> str | None:
    """The one commit of ``repo_id`` in the cache whose id begins with ``revision`` when that is a shortened commit id
    (``pull`` prints the first 7 digits), else None: huggingface_hub looks a short id up as a branch or tag, so the
    cached commit was said to be missing."""
    from huggingface_hub.file_download import repo_folder_name

    if revision is None or not re.fullmatch(r"[0-9a-f]{4,39}", revision):
        return None
    snapshots = Path(cache) / repo_folder_name(repo_id=repo_id, repo_type="model") / "snapshots"
    try:
        found = [entry.name for entry in snapshots.iterdir() if entry.name.startswith(revision)]
    except OSError:
        return None
    return found[0] if len(found) == 1 and _HEX40.fullmatch(found[0]) else None


def _cache_to_fill(repo_id: str, pull: str, cache: str, chosen_by: str) -> tuple[str, str]:
    """The Hub cache a missing file was looked for in (its path, the setting that chose it, whether it exists), and
    how to fill it without the Hub: a node that never reaches the Hub was told to "pull it once while online", which
    it cannot, and not which folder to bring from a machine that can, nor where to put it."""
    from huggingface_hub.file_download import repo_folder_name

    missing = ", a folder that does not exist" if not Path(cache).is_dir() else ""
    folder = repo_folder_name(repo_id=repo_id, repo_type="model")
    return (f"the Hub cache {cache} (from {chosen_by}{missing})",
            f"on a machine that reaches the Hub, run `{pull}`, then copy the folder {folder} of its Hub cache "
            f"(pull prints where it is) into {cache} here")


def _unfinished_push(exc: BaseException, repo_id: str, revision: str | None,
                     token: str | bool | None) -> HubError | None:
    """For a repo that lacks a model file: if it holds nothing but what a push writes (or nothing at all), the
    error that says so. A push creates the repo, then commits; cut off in between, it left an empty repo that
    was called "not an msrnn-zoo model", when pushing again is all it needs. None for any other repo."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import EntryNotFoundError

    if not isinstance(exc, EntryNotFoundError):
        return None
    try:  # one more request, on this failure only; if it fails too, the plain "has no FILE" stands
        info = HfApi(endpoint=hub_endpoint(), token=token).model_info(repo_id, revision=revision)
    except Exception:
        return None
    files = sorted(sibling.rfilename for sibling in info.siblings or ())
    pushed = {".gitattributes", WEIGHTS_NAME, CONFIG_NAME, CARD_NAME, *RUN_EXTRAS}
    missing = " or ".join(name for name in (CONFIG_NAME, WEIGHTS_NAME) if name not in files)
    if not missing or not set(files) <= pushed:  # a file of another library's: the repo is someone else's model
        return None
    held = [name for name in files if name != ".gitattributes"]  # the Hub writes that one when it creates a repo
    state = (f"holds {', '.join(held)} but no {missing}" if held else
             "is empty (created, but no model file was ever committed to it)")
    return HubRepoNotFoundError(f"{_where(repo_id, revision)} {state}: it looks like a push that did not finish. Push "
                                f"to it again (`msrnn-zoo push RUN {repo_id}`, or push_to_hub), then load it.")


def _cached_note(repo_id: str, filenames: tuple[str, ...], revision: str | None, cache: str) -> str:
    """A sentence saying which commit of the repo the cache holds, for a download that could not happen."""
    from huggingface_hub import try_to_load_from_cache

    found = [try_to_load_from_cache(repo_id, name, cache_dir=cache, revision=revision) for name in filenames[:2]]
    if not all(isinstance(path, str) for path in found):
        return ""
    commit = Path(str(found[0])).parent.name
    return f" The cache holds it at commit {commit[:7]}, perhaps not the latest; it loads from there without the Hub."


class HubMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for :class:`~msrnn_zoo.network.Forecaster`."""

    config: Any

    def save_pretrained(self, directory: str | Path, *, card: str | None = None, force: bool = False,
                        license: str | None = None) -> Path:
        """Write ``model.safetensors``, ``config.json`` and a model card into ``directory``.

        As huggingface_hub's mixins do, a card is written even when none is given: one generated from the
        config (architecture, size, how to load it), unless the directory already holds a README.md of its
        own. A card msrnn-zoo wrote there is written again under ``force``: it described the model replaced.
        ``license`` is the Hub license id the generated card claims (default apache-2.0; `msrnn-zoo push` of the
        folder keeps it).
        """
        from .train import refuse_a_run_as_model_folder

        directory = Path(directory)
        license = _card_license(card, license)
        if card is not None:
            _check_card_text(card)
        refuse_a_run_as_model_folder(directory)  # "not a model that msrnn-zoo wrote" was the wrong reason, or none
        self._check_config_describes_weights()
        refuse_overwrite(directory / WEIGHTS_NAME, force, "model")
        refuse_overwrite(directory / CONFIG_NAME, force, "config")  # a project's own config.json is not ours
        if card is not None:
            refuse_overwrite(directory / CARD_NAME, force, "model card")
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}  # type: ignore[attr-defined]
        meta = {"format": "pt", "library": "msrnn-zoo", **versions_metadata(self.config.cell)}
        atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata=meta))
        write_json(directory / CONFIG_NAME, {**self.config.to_dict(), WRITTEN_BY: written_by(cell=self.config.cell)})
        stale = force and written_by_us(directory / CARD_NAME, "model card")
        if card is None and (stale or not (directory / CARD_NAME).exists()):
            from .card import render_model_card

            card = render_model_card(self, None, license)
        if card is not None:
            write_text(directory / CARD_NAME, card)
        return directory

    def _check_config_describes_weights(self) -> None:
        """Refuse to save a config that no longer builds this model (``model.config`` is a plain dataclass, and a
        field changed after creation would be written beside weights of another shape: a folder that never loads)."""
        import torch

        from .factory import from_config

        with torch.device("meta"):  # the shapes alone: no memory, no initialisation
            expected = {k: tuple(v.shape) for k, v in from_config(self.config).state_dict().items()}
        actual = {k: tuple(v.shape) for k, v in self.state_dict().items()}  # type: ignore[attr-defined]
        if expected != actual:
            raise ValueError(f"model.config ({self.config.to_json()}) no longer describes this model's weights: was "
                             "it changed after the model was built? Build the model you want with "
                             "msrnn_zoo.create(...) instead of editing its config, then save that one.")

    @classmethod
    def from_pretrained(cls, source: str | Path, *, revision: str | None = None,
                        cache_dir: str | Path | None = None, token: str | bool | None = None,
                        local_files_only: bool = False, force_download: bool = False,
                        map_location: str = "cpu", cast: bool = False) -> Any:
        """Load a model from a local directory or a Hub repo id (``user/repo``), optionally at ``revision``.

        Weights must match the config exactly (names, shapes, float32, finite); ``cast=True`` accepts
        floating-point weights of another precision, converted on load. A local directory wins over a Hub
        repo of the same name, as in huggingface_hub's libraries.
        """
        from .validation import parse_device

        parse_device(map_location, "map_location")  # first: read later, a typo ('gpu') was blamed on the weights
        directory = Path(source)
        if directory.is_dir():
            shadow = shadowed_repo(source)
            if revision is not None:
                raise ValueError(f"revision={revision!r} applies to Hub repos, but {directory} is a local "
                                 f"directory.{shadow}")
            config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
            for path in (config_path, weights_path):
                if path.is_dir():  # "has no model.safetensors" sent the user looking for a file they could see
                    raise IsADirectoryError(f"{path} is a folder where {directory}'s {path.name} file should be: "
                                            f"rename it, then load a directory written by save_pretrained or "
                                            f"`msrnn-zoo train`.{shadow}")
                if not path.is_file():
                    raise FileNotFoundError(f"{directory} has no {path.name}: it is not a directory written by "
                                            f"save_pretrained or `msrnn-zoo train`.{shadow}")
            return cls._from_files(config_path, weights_path, None, map_location=map_location, cast=cast)
        if directory.is_file():  # a string "runs/a/model.safetensors" has the form of a repo id: it went to the Hub
            raise FileNotFoundError(f"{directory} is a file; pass the directory that holds it ({directory.parent}), "
                                    "written by save_pretrained or `msrnn-zoo train`.")
        if isinstance(source, os.PathLike):  # a path is never a repo id: "Hub repo 'runs/a' was not found" misleads
            raise FileNotFoundError(f"{directory} is not a directory; a path must name a directory written by "
                                    "save_pretrained or `msrnn-zoo train` (a Hub repo id is given as a string).")
        paths, commit = download_files(str(source), (CONFIG_NAME, WEIGHTS_NAME), revision=revision,
                                       cache_dir=cache_dir, token=token, local_files_only=local_files_only,
                                       force_download=force_download)
        origin = _where(str(source), revision) + (f" (commit {commit[:7]})" if commit else "")
        return cls._from_files(paths[CONFIG_NAME], paths[WEIGHTS_NAME], origin, map_location=map_location, cast=cast)

    @classmethod
    def _from_files(cls, config_path: Path, weights_path: Path, origin: str | None, *, map_location: str = "cpu",
                    cast: bool = False) -> Any:
        """The model of a config and weights file; ``origin`` names the Hub repo they came from (None: local)."""
        import torch

        from .factory import from_config
        from .joint_conv import fold_joint_convs
        from .network import ForecasterConfig
        from .versions import absent_note, upgrade_note, upgrade_noted

        data = read_json(config_path, "model config")
        note = upgrade_note(data)  # what this zoo refuses in it, a newer zoo or cell plugin may have written
        try:
            config = ForecasterConfig.from_dict(data, what=str(config_path))
        except (ValueError, TypeError, KeyError) as exc:
            if origin is None:
                raise
            if note:  # (the note is in exc's message) not "not ours": ours, of a newer version
                raise HubError(f"{origin}: {exc}") from exc
            raise HubError(f"{origin}: {CONFIG_NAME} is not an msrnn-zoo model config ({exc}).") from exc

        def build(device: str | None = None) -> Any:
            try:
                with torch.device(device) if device else contextlib.nullcontext():
                    return from_config(config)
            except ValueError as exc:  # an unknown cell, options it rejects: name the file they came from (a repo's
                # name is put before it below, with the weights' errors: put here too, it was said twice)
                where = "" if origin else f"{config_path}: "
                raise ValueError(f"{where}{exc}{note}{absent_note(data)}") from exc

        try:
            # the header alone, before the model is built: a config claiming sizes its weights do not have (a
            # crafted or mistaken one) allocated gigabytes, or built layers for minutes, before it was refused
            layout = weights_layout(weights_path)
            if layout is not None:
                _check_layer_count(config.num_layers, layout, config_path, weights_path)
                try:
                    shapes = build("meta")
                except (ValueError, RuntimeError, NotImplementedError):  # a cell that reads a value as it is built
                    # (.item(), .tolist()) cannot be built without memory, and loaded before this check: it loads
                    # unchecked; a config that cannot be built at all, the build below says what is wrong with it
                    shapes = None
                if shapes is not None:
                    with upgrade_noted(writers_of(weights_path)):
                        fold_joint_convs(shapes, layout)
                        check_weights(shapes, layout, str(weights_path), cast=cast)
            model = build()
            load_weights(model, weights_path, device=map_location, cast=cast)
        except UnreadableWeightsError as exc:
            if origin is None:
                raise
            # the cache holds what the Hub served, checked against its hash: the repo's own file is damaged
            raise HubError(f"{origin}: its {WEIGHTS_NAME} is not a readable safetensors file ({exc.detail}); the "
                           "repo itself holds a damaged or foreign file. Push the model to it again, or ask its "
                           "owner to.") from exc
        except ValueError as exc:  # names, shapes, precision, values: say which repo, not only its cache path
            if origin is None:
                raise
            raise ValueError(f"{origin}: {exc}") from exc
        return model

    def push_to_hub(self, repo_id: str, *, card: str | None = None, token: str | None = None, private: bool = False,
                    commit_message: str = "Upload msrnn-zoo model",
                    extra_files: dict[str, str | Path] | None = None, license: str | None = None) -> str:
        """Create ``repo_id`` if needed and upload weights, config, card (and ``extra_files``, path in repo ->
        local file) in one commit; returns the commit's URL. Without ``card``, one is generated for the repo,
        claiming ``license`` (a Hub license id; default apache-2.0)."""
        import tempfile

        license = _card_license(card, license)  # before anything is rendered or uploaded
        own = {WEIGHTS_NAME, CONFIG_NAME, CARD_NAME}
        clash = sorted(own.intersection(extra_files or {}))
        if clash:  # uploaded last, it would replace the model's own file in the same commit
            raise ValueError(f"extra_files may not hold {', '.join(clash)}: push_to_hub writes the model's own "
                             f"{', '.join(sorted(own))}. Pass the card as card=, or upload other files under other "
                             "names.")
        if card is None:
            from .card import render_model_card

            card = render_model_card(self, repo_id, license)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, card=card)
            files = {name: Path(tmp) / name for name in (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)}
            files.update({name: Path(path) for name, path in (extra_files or {}).items()})
            return upload_files(repo_id, files, token=token, private=private, commit_message=commit_message)


def _check_layer_count(num_layers: int, layout: dict[str, Any], config_path: Path, weights_path: Path) -> None:
    """Refuse a config with more layers than its weights file holds weights for (a layer's are ``cells.INDEX.*``),
    before the model is built: building the layers of ``num_layers: 1000000``, even without their memory, took
    minutes before the weights were found not to fit."""
    from .weights import _names

    held = {name.split(".")[1] for name in layout if name.startswith("cells.") and name.split(".")[1].isdigit()}
    if not held:  # no layer's weights at all: another library's file, whatever the config says
        others = sorted(name for name in layout if name.split(".")[0] not in ("embed", "head"))
        held_too = f" and holds {len(others)} weight(s) the model does not have ({_names(others)})" if others else ""
        raise ValueError(f"{weights_path} lacks the weights of every layer (cells.*){held_too}: it belongs to another "
                         f"model than its {CONFIG_NAME} describes.")
    if num_layers > len(held):
        raise ValueError(f"{config_path}: num_layers is {num_layers}, but {weights_path} holds the weights of "
                         f"{len(held)} layer(s); the weights and {CONFIG_NAME} do not match (they belong to "
                         "different models).")


def _card_license(card: str | None, license: str | None) -> str:
    """The checked license of the card msrnn-zoo generates; ``license=`` beside a ``card=`` of the user's is refused:
    that card is written as it is, and the license asked for would silently not be the one it claims."""
    from .licenses import DEFAULT_LICENSE, check_license

    if card is not None and license is not None:
        raise ValueError(f"license={license!r} applies to the card msrnn-zoo generates, and card= is written as it "
                         "is: put `license: ID` in your card's YAML header and leave out license=, or leave out card=.")
    return check_license(DEFAULT_LICENSE if license is None else license)


def _check_card_text(card: Any) -> None:
    """Refuse a ``card=`` that is not a card's text: a path to one (written as the card itself, it made a repo
    whose README reads ``cards/mine.md``), or nothing at all (an empty README)."""
    if isinstance(card, os.PathLike) or (isinstance(card, str) and "\n" not in card.strip() and card.strip() and (
            card.strip().lower().endswith((".md", ".markdown", ".txt")) or Path(card.strip()).is_file())):
        raise ValueError(f"card={os.fspath(card)!r} looks like the path of a card, but card= takes the card's text "
                         f"(Markdown): pass card=Path({os.fspath(card)!r}).read_text(encoding='utf-8').")
    if not isinstance(card, str):
        raise TypeError(f"card= takes the card's text (Markdown), not {type(card).__name__}.")
    if not card.strip():
        raise ValueError("card= is empty: the repo would get a blank README.md. Leave card= out for a card generated "
                         "from the model, or pass the card's text.")


def shadowed_repo(source: str | os.PathLike[str]) -> str:
    """A sentence for messages about ``source`` read as a local directory although it is spelled like a Hub
    repo id (``user/model``): a folder of that name under the working directory hides the repo. Else ''."""
    if not isinstance(source, str) or source.count("/") != 1 or source.startswith(("/", ".", "~")):
        return ""
    return (f" If you meant the Hub repo {source!r}: the folder of that name in the working directory is read in "
            "its place; run from another folder, or rename that one.")


def pulled_repo_note(source: str | os.PathLike[str]) -> str:
    """A sentence for messages about ``source``, a run directory that does not exist, when it names a Hub repo whose
    model the cache holds (``msrnn-zoo evaluate me/model`` after ``pull``): "train one with --out me/model" told the
    user to train what they had pulled. Else ''."""
    from types import SimpleNamespace

    from huggingface_hub import try_to_load_from_cache

    from .card import _model_name

    text = os.fspath(source)
    if text.count("/") != 1 or text.startswith(("/", ".", "~")) or text.endswith("/"):
        return ""
    try:
        found = try_to_load_from_cache(text, CONFIG_NAME, cache_dir=hub_cache())
        config = read_json(Path(str(found)), "model config") if isinstance(found, str) else None
    except Exception:  # not a repo id the cache could hold, or a config it cannot read: no note
        return ""
    if not isinstance(config, dict) or not isinstance(config.get("cell"), str):
        return ""
    name = _model_name(SimpleNamespace(config=SimpleNamespace(cell=config["cell"], schedule=config.get("schedule"))))
    return (f" {text} is also a Hub repo whose model the cache holds (pulled): a pulled model is weights and a config, "
            f"without the run (data, split, training) that evaluate and predict read. Load it in Python with "
            f'msrnn_zoo.create("{name}", pretrained="{text}").')


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it has the form of a Hub repo id (``user/model``), else a ``ValueError`` saying so.

    The Hub's own rules for names are checked too (huggingface_hub's): else ``card`` wrote a card whose load
    lines name a repo that cannot exist, and ``push`` failed only after rendering it."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if repo_id.count("/") != 1 or repo_id.startswith(("/", ".")) or repo_id.endswith("/"):
        raise ValueError(f"{repo_id!r} is not a Hub repo id like 'user/model'.")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        rule = str(exc).split(": '")[0].rstrip(".")
        raise ValueError(f"{repo_id!r} is not a valid Hub repo id ({rule}).") from exc
    return repo_id


def _repo_info(repo_id: str, token: str | bool | None) -> Any:
    """What the Hub says of ``repo_id`` before a push to it: its ``ModelInfo``, or None if it does not exist yet
    (or this token cannot see it: the push then fails with the reason)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if hub_offline():
        raise HubError(f"Cannot push to {_where(repo_id, None)}: offline mode is on ({offline_setting()}).")
    try:
        return HfApi(endpoint=hub_endpoint(), token=token).model_info(repo_id)
    except HfHubHTTPError as exc:
        if getattr(exc.response, "status_code", None) in (401, 404):
            return None
        raise explain(exc, repo_id, None, "push to", token) from exc
    except Exception as exc:
        raise explain(exc, repo_id, None, "push to", token) from exc


def repo_state(repo_id: str, token: str | None = None) -> tuple[set[str], str | None]:
    """The files of ``repo_id`` on its main branch and its commit id; none and None if it does not exist yet."""
    info = _repo_info(check_repo_id(repo_id), clean_token(token))
    if info is None:
        return set(), None
    return {sibling.rfilename for sibling in info.siblings or ()}, info.sha


def upload_files(repo_id: str, files: dict[str, Path], *, token: str | None = None, private: bool = False,
                 commit_message: str = "Upload msrnn-zoo model", delete: tuple[str, ...] = ()) -> str:
    """Create ``repo_id`` if needed and commit ``files`` (path in repo -> local file) at once; the commit URL.

    One ``create_commit`` rather than ``upload_folder``: exactly these files, in a single commit, and the
    first failure (server down, no token, no write access) becomes one plain error. The files named in
    ``delete`` (which must be in the repo) leave it in the same commit.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    check_repo_id(repo_id)
    sent = clean_token(token)
    if hub_offline():
        raise HubError(f"Cannot push to {_where(repo_id, None)}: offline mode is on ({offline_setting()}).")
    for name, path in files.items():
        if Path(path).is_dir():  # it exists: "does not exist" sent the user looking for a typo
            raise IsADirectoryError(f"Cannot push {name}: {path} is a folder; give a file for each path in the repo.")
        if not Path(path).is_file():
            raise FileNotFoundError(f"Cannot push {name}: {path} does not exist.")
    if private:  # create_repo keeps an existing repo as it is: the files would go public without a word
        info = _repo_info(repo_id, sent)
        if info is not None and info.private is False:
            raise HubError(f"{_where(repo_id, None)} already exists and is public, so --private / private=True "
                           "(which applies when the repo is created) would not hide what is pushed. Make the repo "
                           "private on the Hub first (its Settings), or push to a new repo; nothing was pushed.")
    api = HfApi(endpoint=hub_endpoint(), token=sent)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        operations: list[Any] = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path))
                                 for name, path in files.items()]
        operations += [CommitOperationDelete(path_in_repo=name) for name in delete if name not in files]
        info = api.create_commit(repo_id, operations, commit_message=commit_message)
    except ValueError as exc:  # e.g. the Hub's YAML validation of the card
        raise HubError(f"The Hub at {_endpoint_name()} refused the upload to {_where(repo_id, None)}: "
                       f"{' '.join(str(exc).split())}") from exc
    except Exception as exc:
        raise explain(exc, repo_id, None, "push to", sent) from exc
    return str(getattr(info, "commit_url", info))


def resolve_pretrained(model_name: str, pretrained: bool | str | os.PathLike[str], *, revision: str | None = None,
                       token: str | bool | None = None, cache_dir: str | Path | None = None,
                       local_files_only: bool = False, force_download: bool = False, cast: bool = False,
                       **overrides: Any) -> Any:
    """The model ``model_name`` with weights from a catalogue tag, a local directory or a Hub repo (``cast``: of
    another floating-point precision, converted on load, as :meth:`HubMixin.from_pretrained` takes it)."""
    from .network import Forecaster
    from .registry import get_model

    entry = get_model(model_name)
    if overrides:
        raise ValueError(f"Config overrides {sorted(overrides)} cannot be applied to pretrained weights; "
                         "load the checkpoint as it was trained (Hub options: revision, token, cache_dir, "
                         "local_files_only, force_download; cast for weights of another precision).")
    record = None
    if pretrained is True:
        if not entry.pretrained:
            raise ValueError(f"{model_name!r} has no checkpoint in the pretrained catalogue; train one (Trainer.create "
                             "of msrnn_zoo.train) or pass a directory or Hub repo id as pretrained=.")
        record = next(iter(entry.pretrained.values()))
    elif isinstance(pretrained, os.PathLike):  # a path is a directory, never a tag or a repo id
        pretrained = os.fspath(pretrained)
        if not Path(pretrained).is_dir():
            raise FileNotFoundError(f"pretrained={pretrained!r} is not a directory; a path must name a directory "
                                    "written by save_pretrained or `msrnn-zoo train`.")
    elif not isinstance(pretrained, str):
        raise TypeError(f"pretrained= takes True, a tag, a directory (a string or a path) or a Hub repo id, "
                        f"not {pretrained!r}.")
    elif pretrained in entry.pretrained:
        record = entry.pretrained[pretrained]
    elif not (Path(pretrained).is_dir() or "/" in pretrained):
        tags = ", ".join(entry.pretrained) or "none"
        raise ValueError(f"{model_name!r} has no checkpoint tagged {pretrained!r} (catalogue tags: {tags}; "
                         "msrnn_zoo.list_models(pretrained=True) lists the published ones); pretrained= also takes a "
                         "directory written by save_pretrained or a Hub repo id.")
    source: str = pretrained  # type: ignore[assignment]
    if record is not None:
        if not record.published:  # (the CLI's info reaches it too: it says the commands alone)
            raise with_cli_message(ValueError(record.not_published_message(python=True)),
                                   record.not_published_message())
        source = record.repo_id
        revision = revision or record.revision or None
    model = Forecaster.from_pretrained(source, revision=revision, cache_dir=cache_dir, token=token,
                                       local_files_only=local_files_only, force_download=force_download, cast=cast)
    if model.config.cell != entry.cell or model.config.schedule != entry.schedule:
        raise ValueError(f"{source} holds a {model.config.schedule}-scale {model.config.cell} model, "
                         f"not {model_name!r}.")
    return model
